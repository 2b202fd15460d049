import type { KeyValueStore } from "../infra/kv/key-value";
import type { ProviderRoute } from "../cost/model-catalog";

/** How long a provider-model pair that answered "not found" or "deprecated" is skipped. */
const UNAVAILABLE_MS = 3600_000;

/**
 * Provider-model pairs a provider said it does not (or no longer) serve, shared by every
 * worker: they are skipped by the fallback chain for an hour, then tried again.
 */
export class ModelAvailability {
  constructor(private readonly kv: KeyValueStore) {}

  async markUnavailable(route: ProviderRoute, reason: string): Promise<void> {
    await this.kv.setIfAbsent(this.key(route), reason.slice(0, 200), UNAVAILABLE_MS);
  }

  async isUnavailable(route: ProviderRoute): Promise<boolean> {
    return (await this.kv.get(this.key(route))) !== null;
  }

  private key(route: ProviderRoute): string {
    return `unavailable:${route.provider}:${route.model}`;
  }
}
