import type { ProviderAdapter } from "./provider.adapter";

/** The adapters this deployment has credentials for, by name. */
export class ProviderRegistry {
  private readonly adapters = new Map<string, ProviderAdapter>();

  constructor(adapters: ProviderAdapter[]) {
    for (const a of adapters) this.adapters.set(a.name, a);
  }

  get(name: string): ProviderAdapter | undefined {
    return this.adapters.get(name);
  }

  names(): string[] {
    return [...this.adapters.keys()];
  }
}
