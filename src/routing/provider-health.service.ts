import { requireRole, type Viewer } from "../auth/viewer";
import { Topic, type PubSub } from "../infra/pubsub/pubsub";
import type { ProviderRegistry } from "../providers";
import type { CircuitBreaker, CircuitTransition, ProviderHealthSnapshot } from "./circuit-breaker";

/** Provider health for operators: every circuit now, and each transition as it happens. */
export class ProviderHealthService {
  constructor(
    private readonly breaker: CircuitBreaker,
    private readonly providers: ProviderRegistry,
    private readonly pubsub: PubSub,
  ) {}

  async publish(transition: CircuitTransition): Promise<void> {
    await this.pubsub.publish(Topic.ProviderHealth, "all", transition);
  }

  async list(viewer: Viewer | null): Promise<ProviderHealthSnapshot[]> {
    requireRole(viewer, "ADMIN");
    return Promise.all(this.providers.names().map((name) => this.breaker.health(name)));
  }

  async watch(viewer: Viewer | null): Promise<AsyncIterableIterator<CircuitTransition>> {
    requireRole(viewer, "ADMIN");
    const sub = this.pubsub.subscribe(Topic.ProviderHealth, "all");
    await sub.ready;
    return sub;
  }
}
