import { randomBytes } from "node:crypto";
import type { BatchItem, BatchState } from "../../src/providers";
import { startSimServer, type SimServer } from "../../src/providers/simulated/sim-server";
import { SimServerBatchApi } from "../../src/providers/simulated/sim-server.adapter";

const TOKEN = "sim-test-token";
const SECRET = `whsec_${randomBytes(24).toString("base64")}`;

function item(customId: string, prompt: string, seed = 1): BatchItem {
  return {
    customId,
    request: {
      generationId: customId,
      attempt: 1,
      model: "sim/image",
      mediaType: "IMAGE",
      prompt,
      seed,
      width: 64,
      height: 64,
    },
  };
}

describe("the sim-provider's batch API", () => {
  let sim: SimServer;
  let api: SimServerBatchApi;

  beforeAll(async () => {
    sim = await startSimServer({
      port: 0,
      apiToken: TOKEN,
      webhookSecret: SECRET,
      latencyMs: 30,
      latencyJitter: 0,
    });
    api = new SimServerBatchApi("simulated", `${sim.url}/v1`, TOKEN);
  });

  afterAll(() => sim.close());

  /** Status checks until the batch completes; each answer is a pure function of the time. */
  async function completed(id: string): Promise<Extract<BatchState, { status: "completed" }>> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const state = await api.getStatus(id);
      if (state.status === "completed") return state;
      if (state.status === "failed" || Date.now() > deadline) throw new Error(state.status);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  it("answers a repeated create with the same idempotency key with the batch it made first", async () => {
    const items = [item("a.1", "a quiet harbour"), item("b.1", "a busy market")];
    const first = await api.submit(items, { model: "sim/image", idempotencyKey: "batch-k1" });
    const again = await api.submit(items, { model: "sim/image", idempotencyKey: "batch-k1" });
    expect(again.providerBatchId).toBe(first.providerBatchId);
    const other = await api.submit(items, { model: "sim/image", idempotencyKey: "batch-k2" });
    expect(other.providerBatchId).not.toBe(first.providerBatchId);

    const list = (await (
      await fetch(`${sim.url}/v1/batches`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).json()) as { data: Array<{ id: string; request_counts: { total: number } }> };
    expect(list.data.map((b) => b.id).sort()).toEqual(
      [first.providerBatchId, other.providerBatchId].sort(),
    );
    expect(list.data.every((b) => b.request_counts.total === 2)).toBe(true);
  });

  it("answers each custom id as the same prediction alone would: output, failure, refusal", async () => {
    const { providerBatchId } = await api.submit(
      [
        item("ok.1", "a paper lantern"),
        item("fail.1", "a paper lantern [sim:fail]"),
        item("refuse.1", "a paper lantern [sim:reject]"),
      ],
      { model: "sim/image", idempotencyKey: "batch-k3" },
    );
    const { results } = await completed(providerBatchId);
    expect([...results.keys()].sort()).toEqual(["fail.1", "ok.1", "refuse.1"]);
    const ok = results.get("ok.1")!;
    expect(ok.status).toBe("succeeded");
    const url = ok.status === "succeeded" ? ok.outputs[0]!.url! : "";
    const png = await fetch(url);
    expect(png.status).toBe(200);
    expect(png.headers.get("content-type")).toBe("image/png");
    const failed = results.get("fail.1")!;
    expect(failed.status === "failed" && failed.error).toMatchObject({
      code: "PROVIDER_ERROR",
      retryable: true,
    });
    const refused = results.get("refuse.1")!;
    expect(refused.status === "failed" && refused.error).toMatchObject({
      code: "CONTENT_REFUSED",
      retryable: false,
    });
  });

  it("refuses a batch with invalid items", async () => {
    await expect(
      api.submit([item("x.1", "")], { model: "sim/image", idempotencyKey: "batch-k4" }),
    ).rejects.toMatchObject({ code: "INVALID_INPUT", retryable: false });
    await expect(
      api.submit([], { model: "sim/image", idempotencyKey: "batch-k5" }),
    ).rejects.toMatchObject({ code: "INVALID_INPUT" });
  });
});
