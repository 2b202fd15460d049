import type { Logger } from "../common/logger";
import type { MediaType } from "../entities";
import { Topic, type PubSub, type Subscription } from "../infra/pubsub/pubsub";
import type { CatalogChangedPayload } from "../infra/pubsub/pubsub";
import type { CatalogRepository } from "./catalog.repository";
import { StaticModelCatalog, type ModelCatalog, type ModelDefinition } from "./model-catalog";

export interface PostgresCatalogOptions {
  /** Whether this deployment has the provider; models with none of theirs stay out of view. */
  configured(provider: string): boolean;
  /** Caps every model's provider timeout (PROVIDER_TIMEOUT_SECONDS). */
  timeoutCapSeconds?: number;
  /** A reload this often, in case an invalidation was lost (pub/sub is at most once). */
  reloadIntervalMs: number;
}

/**
 * The operators' catalog, held in memory so the domain reads it synchronously. Every
 * process loads it at start and again when any process publishes a change on
 * `Topic.Catalog`, and on a timer as a backstop. What `get` and `list` return is the usable
 * part: models with at least one configured provider, with only those routes (like
 * `StaticModelCatalog.available`); `stored()` is everything, for operators.
 */
export class PostgresModelCatalog implements ModelCatalog {
  private view = new StaticModelCatalog([]);
  private all: ModelDefinition[] = [];
  private subscription?: Subscription<CatalogChangedPayload>;
  private timer?: NodeJS.Timeout;
  private queued: Promise<void> | null = null;
  private last: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly repo: CatalogRepository,
    private readonly pubsub: PubSub,
    private readonly opts: PostgresCatalogOptions,
    private readonly logger: Logger,
  ) {}

  /** Loads the catalog; changes published from then on are not missed. */
  async start(): Promise<void> {
    // Subscribe first: a change committed between the load and the subscription would be lost.
    const sub = this.pubsub.subscribe(Topic.Catalog, "all");
    this.subscription = sub;
    await sub.ready;
    void (async () => {
      for await (const change of sub) {
        this.reload().then(
          () => this.logger.info({ model: change.model }, "catalog reloaded after an edit"),
          (err: unknown) => this.logger.warn({ err, model: change.model }, "catalog reload failed"),
        );
      }
    })();
    // Notices published while Redis was away are lost: read the catalog again at once.
    sub.onResumed(() => {
      this.reload().catch((err: unknown) =>
        this.logger.warn({ err }, "catalog reload after a pub/sub gap failed"),
      );
    });
    await this.reload();
    this.timer = setInterval(() => {
      this.reload().catch((err: unknown) =>
        this.logger.warn({ err }, "periodic catalog reload failed; keeping the last one"),
      );
    }, this.opts.reloadIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.subscription?.return();
    await this.last;
  }

  get(name: string): ModelDefinition | undefined {
    return this.view.get(name);
  }

  list(mediaType?: MediaType): ModelDefinition[] {
    return this.view.list(mediaType);
  }

  /** Every stored model with every route, whether or not this deployment can serve it. */
  stored(): ModelDefinition[] {
    return this.all;
  }

  isConfigured(provider: string): boolean {
    return this.opts.configured(provider);
  }

  /** After an edit: reload here at once, and tell every other process. */
  async changed(model: string): Promise<void> {
    await this.reload();
    await this.pubsub
      .publish(Topic.Catalog, "all", { model, at: new Date().toISOString() })
      .catch((err: unknown) =>
        this.logger.warn(
          { err, model },
          "catalog change not published; others reload on their timer",
        ),
      );
  }

  /**
   * Reads the catalog from Postgres. A reload asked for while one runs waits for the next
   * one, which starts after it; requests made meanwhile share that next one.
   */
  reload(): Promise<void> {
    if (this.queued) return this.queued;
    const next = this.last.then(() => {
      this.queued = null;
      return this.load();
    });
    this.queued = next;
    this.last = next.catch(() => undefined);
    return next;
  }

  /** Called after every successful reload (tests wait on it). */
  onReload(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async load(): Promise<void> {
    const models = await this.repo.loadAll();
    const cap = this.opts.timeoutCapSeconds;
    this.all = models;
    this.view = StaticModelCatalog.available(
      models.map((m) => (cap ? { ...m, timeoutSeconds: Math.min(m.timeoutSeconds, cap) } : m)),
      this.opts.configured,
    );
    for (const listener of this.listeners) listener();
  }
}
