import {
  ProviderError,
  ProviderErrorCode,
  type BatchItem,
  type BatchState,
  type FinishedJobState,
  type ProviderBatchApi,
} from "../provider.adapter";
import { providerFetch } from "../provider.http";
import { ReplicateAdapter, replicateInput, type ReplicateOptions } from "../replicate";

interface SimBatchJson {
  id: string;
  status: "in_progress" | "completed";
  request_counts?: { total: number; completed: number; failed: number };
}

interface SimBatchResults {
  data: Array<{
    custom_id: string;
    status: string;
    output: string[] | null;
    error: string | null;
  }>;
}

/**
 * The batch API of a `gengate sim-provider` server (see `sim-server.ts`): items under custom
 * ids, an `Idempotency-Key` so a repeated create makes nothing twice, status, results.
 */
export class SimServerBatchApi implements ProviderBatchApi {
  readonly discount = 0.5;
  readonly maxItems = 1000;
  private readonly authorization: string;

  constructor(
    private readonly provider: string,
    private readonly baseUrl: string,
    apiToken: string,
  ) {
    this.authorization = `Bearer ${apiToken}`;
  }

  async submit(
    items: BatchItem[],
    opts: { model: string; idempotencyKey: string },
  ): Promise<{ providerBatchId: string; pollAfterMs?: number }> {
    const res = await providerFetch<SimBatchJson>(this.provider, `${this.baseUrl}/batches`, {
      headers: { authorization: this.authorization, "idempotency-key": opts.idempotencyKey },
      json: {
        model: opts.model,
        items: items.map((i) => ({ custom_id: i.customId, input: replicateInput(i.request) })),
      },
    });
    if (!res.body?.id) {
      throw new ProviderError(
        `${this.provider}: batch answer has no id`,
        ProviderErrorCode.ProviderError,
        true,
      );
    }
    return { providerBatchId: res.body.id };
  }

  async getStatus(providerBatchId: string): Promise<BatchState> {
    const url = `${this.baseUrl}/batches/${encodeURIComponent(providerBatchId)}`;
    const headers = { authorization: this.authorization };
    const batch = (await providerFetch<SimBatchJson>(this.provider, url, { headers })).body;
    if (batch.status !== "completed") {
      const c = batch.request_counts;
      return { status: "pending", finished: c ? c.completed + c.failed : undefined };
    }
    const results = new Map<string, FinishedJobState>();
    const answer = await providerFetch<SimBatchResults>(this.provider, `${url}/results`, {
      headers,
    });
    for (const r of answer.body.data ?? []) {
      if (r.status === "succeeded" && r.output?.length) {
        results.set(r.custom_id, {
          status: "succeeded",
          outputs: r.output.map((u) => ({ url: u })),
        });
        continue;
      }
      const text = r.error ?? r.status;
      const refused = /flagged as sensitive|\bE005\b/i.test(text);
      results.set(r.custom_id, {
        status: "failed",
        error: new ProviderError(
          `${this.provider}: batch item failed: ${text.slice(0, 300)}`,
          refused ? ProviderErrorCode.ContentRefused : ProviderErrorCode.ProviderError,
          !refused,
        ),
      });
    }
    return { status: "completed", results };
  }
}

/** A sim-provider server: Replicate's protocol for single requests, plus its batch API. */
export class SimServerAdapter extends ReplicateAdapter {
  readonly batch: ProviderBatchApi;

  constructor(opts: ReplicateOptions & { name: string; baseUrl: string }) {
    super(opts);
    this.batch = new SimServerBatchApi(opts.name, opts.baseUrl.replace(/\/+$/, ""), opts.apiToken);
  }
}
