import type { Logger } from "../common/logger";
import type { KeyValueStore } from "../infra/kv/key-value";
import {
  ProviderError,
  clampProgress,
  WebhookVerificationError,
  type ProviderRegistry,
  type WebhookEvent,
  type WebhookRequest,
} from "../providers";
import type { GenerationEvents } from "./generation.events";
import type { GenerationQueue } from "./generation.queue";
import type { GenerationRepository } from "./generation.repository";

/** How long a delivery id is remembered: longer than any provider's retry window we know. */
const REPLAY_WINDOW_MS = 3 * 24 * 3600 * 1000;

export interface WebhookResponse {
  status: number;
  body: { ok: boolean; outcome?: "applied" | "ignored"; error?: string };
}

/**
 * Inbound provider webhooks, in the api process. The adapter verifies the signature and the
 * timestamp; a delivery id seen before is refused; progress is applied at once and a finished
 * job gets one status check in a worker (which stores the outputs), so the api never
 * downloads. Out-of-order and duplicate events change nothing: progress only grows and every
 * transition is conditional. Jobs we do not know get a 2xx, so the provider stops retrying.
 */
export class ProviderWebhookService {
  constructor(
    private readonly providers: ProviderRegistry,
    private readonly kv: KeyValueStore,
    private readonly repo: GenerationRepository,
    private readonly queue: GenerationQueue,
    private readonly events: GenerationEvents,
    private readonly logger: Logger,
  ) {}

  async handle(providerName: string, req: WebhookRequest): Promise<WebhookResponse> {
    const adapter = this.providers.get(providerName);
    if (!adapter?.parseWebhook)
      return { status: 404, body: { ok: false, error: "unknown provider" } };
    let event: WebhookEvent;
    try {
      event = await adapter.parseWebhook(req);
    } catch (err) {
      if (err instanceof WebhookVerificationError || err instanceof ProviderError) {
        this.logger.warn({ provider: providerName, reason: err.message }, "webhook refused");
        return { status: 401, body: { ok: false, error: err.message } };
      }
      throw err;
    }
    const replayKey = `webhook:${providerName}:${event.deliveryId}`;
    if (!(await this.kv.setIfAbsent(replayKey, "1", REPLAY_WINDOW_MS))) {
      return { status: 409, body: { ok: false, error: "delivery already received" } };
    }
    try {
      const outcome = await this.apply(providerName, event);
      return { status: 200, body: { ok: true, outcome } };
    } catch (err) {
      // Let the provider's retry of this delivery through: it was not applied.
      await this.kv.delete(replayKey).catch(() => undefined);
      throw err;
    }
  }

  private async apply(provider: string, event: WebhookEvent): Promise<"applied" | "ignored"> {
    const found = await this.repo.findAttemptByProviderJob(provider, event.providerJobId);
    if (!found || found.attempt.status !== "RUNNING") return "ignored";
    const { generationId, number } = found.attempt;
    if (event.state.status === "queued" || event.state.status === "processing") {
      const progress = clampProgress(event.state.progress);
      const moved = await this.repo.touchProgress(generationId, number, progress);
      if (moved) {
        for (const g of [moved.generation, ...moved.followers])
          await this.events.publish("PROGRESS", g);
      }
      return "applied";
    }
    await this.queue.pollOnce(generationId, number);
    return "applied";
  }
}
