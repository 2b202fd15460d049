import { PNG } from "pngjs";
import { ProviderError } from "../../src/providers";
import { SimulatedProviderAdapter } from "../../src/providers/simulated/simulated.adapter";

function provider(opts: Partial<ConstructorParameters<typeof SimulatedProviderAdapter>[0]> = {}) {
  let now = 1_000_000;
  const adapter = new SimulatedProviderAdapter({
    latencyMs: 1000,
    latencyJitter: 0,
    failureRate: 0,
    progressSteps: 4,
    now: () => now,
    ...opts,
  });
  return { adapter, advance: (ms: number) => (now += ms) };
}

const request = {
  generationId: "g",
  attempt: 1,
  model: "sim-image-fast",
  mediaType: "IMAGE" as const,
  prompt: "a quiet harbour",
  seed: 42,
  width: 64,
  height: 64,
};

describe("simulated provider", () => {
  it("reports stepped progress, then a PNG of the requested size", async () => {
    const { adapter, advance } = provider();
    const { providerJobId, pollAfterMs } = await adapter.submit(request);
    expect(pollAfterMs).toBe(250);
    expect(await adapter.getStatus(providerJobId)).toMatchObject({
      status: "processing",
      progress: 0,
    });
    advance(600);
    expect(await adapter.getStatus(providerJobId)).toMatchObject({
      status: "processing",
      progress: 0.5,
    });
    advance(400);
    const done = await adapter.getStatus(providerJobId);
    if (done.status !== "succeeded") throw new Error(`expected success, got ${done.status}`);
    const png = PNG.sync.read(done.outputs[0]!.data!);
    expect([png.width, png.height]).toEqual([64, 64]);
    expect(done.outputs[0]!.contentType).toBe("image/png");
  });

  it("answers about a job from another instance (the job id carries the job)", async () => {
    const a = provider();
    const b = provider();
    const { providerJobId } = await a.adapter.submit(request);
    b.advance(1000);
    expect((await b.adapter.getStatus(providerJobId)).status).toBe("succeeded");
  });

  it("is deterministic for a prompt and seed: same latency, failure and output", async () => {
    const { adapter, advance } = provider({ latencyJitter: 0.5, failureRate: 0.5 });
    const outcomes = new Set<string>();
    for (let i = 0; i < 2; i++) {
      const { providerJobId } = await adapter.submit({ ...request, seed: 7 });
      advance(10_000);
      const s = await adapter.getStatus(providerJobId);
      outcomes.add(s.status === "succeeded" ? s.outputs[0]!.data!.toString("base64") : s.status);
    }
    expect(outcomes.size).toBe(1);
  });

  it("fails about the configured share of seeds", async () => {
    const { adapter, advance } = provider({ failureRate: 0.3 });
    let failed = 0;
    for (let seed = 0; seed < 200; seed++) {
      const { providerJobId } = await adapter.submit({ ...request, seed, width: 8, height: 8 });
      advance(10_000);
      if ((await adapter.getStatus(providerJobId)).status === "failed") failed++;
    }
    expect(failed).toBeGreaterThan(40);
    expect(failed).toBeLessThan(80);
  });

  it("obeys the fail, reject and latency directives", async () => {
    const { adapter, advance } = provider();
    await expect(adapter.submit({ ...request, prompt: "x [sim:reject]" })).rejects.toMatchObject({
      code: "CONTENT_REFUSED",
      retryable: false,
    });
    const slow = await adapter.submit({ ...request, prompt: "x [sim:latency=5000]" });
    const failing = await adapter.submit({ ...request, prompt: "x [sim:fail]" });
    advance(1000);
    expect((await adapter.getStatus(slow.providerJobId)).status).toBe("processing");
    const f = await adapter.getStatus(failing.providerJobId);
    expect(f.status === "failed" && f.error).toMatchObject({
      code: "PROVIDER_ERROR",
      retryable: true,
    });
  });

  it("refuses a job id it did not issue", async () => {
    const { adapter } = provider();
    await expect(adapter.getStatus("sim_garbage")).rejects.toBeInstanceOf(ProviderError);
    await expect(adapter.getStatus("pred_123")).rejects.toMatchObject({ retryable: false });
  });

  it("renders audio as WAV and video as animated PNG", async () => {
    const { adapter, advance } = provider();
    const audio = await adapter.submit({
      ...request,
      mediaType: "AUDIO",
      width: undefined,
      height: undefined,
      durationSeconds: 1,
    });
    const video = await adapter.submit({ ...request, mediaType: "VIDEO", durationSeconds: 1 });
    advance(1000);
    const a = await adapter.getStatus(audio.providerJobId);
    const v = await adapter.getStatus(video.providerJobId);
    expect(a.status === "succeeded" && a.outputs[0]!.contentType).toBe("audio/wav");
    expect(v.status === "succeeded" && v.outputs[0]!.contentType).toBe("image/apng");
  });
});
