import { Writable } from "node:stream";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { createLogger } from "../../src/common/logger";
import { gql, errorCode, wsClient, type WsClient } from "../helpers/graphql";
import { parsePrometheusText, valueOf, type Exposition } from "../helpers/prometheus";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status model cached } }`;
const WATCH = `subscription($id: ID!) { generationUpdated(id: $id) { type generation { id status } } }`;
const PROMPT = "a red kite over the dunes at noon";
const REFUSED = "a grey heron in the reeds [sim:reject]";

// The process-wide provider a deployment registers in main.ts, with an in-memory exporter.
const spans = new InMemorySpanExporter();
const tracerProvider = new NodeTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(spans)],
});
tracerProvider.register();

describe("telemetry of a scripted run: metrics, one trace per generation, log lines", () => {
  let env: TestEnv;
  let server: TestServer;
  let key: string;
  let socket: WsClient;
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const ids: { ok: string; hit: string; refused: string; model: string } = {
    ok: "",
    hit: "",
    refused: "",
    model: "",
  };

  async function generate(prompt: string): Promise<{ id: string; model: string; cached: boolean }> {
    const res = await gql(
      server.url,
      GENERATE,
      { input: { userId: "u-tel", mediaType: "IMAGE", prompt, width: 256, height: 256, seed: 3 } },
      key,
    );
    if (!res.data) throw new Error(JSON.stringify(res.errors));
    return res.data.generate;
  }

  async function finished(id: string): Promise<string> {
    const sub = socket.subscribe(WATCH, { id });
    const done = await sub.until((m) =>
      ["SUCCEEDED", "FAILED"].includes(m.generationUpdated.generation.status),
    );
    sub.stop();
    return done.generationUpdated.generation.status;
  }

  async function scrape(): Promise<Exposition> {
    const res = await fetch(`${server.url}/metrics`);
    return parsePrometheusText(await res.text());
  }

  beforeAll(async () => {
    env = await createTestEnv();
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString("utf8").split("\n").filter(Boolean)) {
          raw.push(line);
          lines.push(JSON.parse(line) as Record<string, unknown>);
        }
        cb();
      },
    });
    server = await startTestServer(env, {
      // Traces are "exported" (to the in-memory exporter): steps look up a generation's trace.
      overrides: { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" },
      logger: createLogger("trace", {}, { destination: sink }),
    });
    key = (await partner(server, await adminKey(server))).key;
    socket = wsClient(server.url, key);

    // The script: one generation runs, the same request is served from the cache, one is
    // refused by the provider, one is bad input.
    const ok = await generate(PROMPT);
    ids.ok = ok.id;
    ids.model = ok.model;
    expect(await finished(ok.id)).toBe("SUCCEEDED");
    const hit = await generate(PROMPT);
    expect(hit.cached).toBe(true);
    ids.hit = hit.id;
    const refused = await generate(REFUSED);
    ids.refused = refused.id;
    expect(await finished(refused.id)).toBe("FAILED");
    const bad = await gql(
      server.url,
      GENERATE,
      { input: { userId: "u-tel", mediaType: "IMAGE", prompt: "" } },
      key,
    );
    expect(errorCode(bad)).toBe("BAD_USER_INPUT");
  });

  afterAll(async () => {
    await socket.dispose();
    await server.stop();
    await env.cleanup();
    await tracerProvider.shutdown();
  });

  describe("metrics", () => {
    it("counts requests, outcomes and errors of the run exactly", async () => {
      const m = await scrape();
      const model = ids.model;

      expect(
        valueOf(m, "gengate_generations_total", { model, status: "QUEUED", cached: "false" }),
      ).toBe(2);
      expect(
        valueOf(m, "gengate_generations_total", { model, status: "SUCCEEDED", cached: "true" }),
      ).toBe(1);
      const done = (provider: string, status: string, cached: string) =>
        valueOf(m, "gengate_generations_finished_total", { model, provider, status, cached });
      expect(done("simulated", "SUCCEEDED", "false")).toBe(1);
      expect(done("cache", "SUCCEEDED", "true")).toBe(1);
      expect(done("simulated", "FAILED", "false")).toBe(1);
      expect(
        valueOf(m, "gengate_errors_total", { source: "attempt", code: "CONTENT_REFUSED" }),
      ).toBe(1);
      expect(
        valueOf(m, "gengate_errors_total", { source: "graphql", code: "BAD_USER_INPUT" }),
      ).toBe(1);
    });

    it("records queue wait, provider time, end-to-end time and cost in histograms", async () => {
      const m = await scrape();
      const model = ids.model;

      expect(valueOf(m, "gengate_queue_wait_seconds_count", { priority: "STANDARD" })).toBe(2);
      expect(
        valueOf(m, "gengate_provider_seconds_count", { provider: "simulated", outcome: "ok" }),
      ).toBe(1);
      expect(
        valueOf(m, "gengate_provider_seconds_count", { provider: "simulated", outcome: "error" }),
      ).toBe(1);
      expect(valueOf(m, "gengate_generation_seconds_count", { model, status: "SUCCEEDED" })).toBe(
        2,
      );
      expect(valueOf(m, "gengate_generation_seconds_count", { model, status: "FAILED" })).toBe(1);
      // The cache hit cost nothing and is not a provider price.
      expect(
        valueOf(m, "gengate_generation_cost_usd_count", { model, provider: "simulated" }),
      ).toBe(1);
      expect(
        valueOf(m, "gengate_generation_cost_usd_sum", { model, provider: "simulated" }),
      ).toBeGreaterThan(0);
    });

    it("reports the gauges: queue, circuits and jobs in flight, idle after the run", async () => {
      const m = await scrape();

      for (const priority of ["INTERACTIVE", "STANDARD", "BATCH"])
        expect(valueOf(m, "gengate_queue_depth", { priority })).toBe(0);
      expect(valueOf(m, "gengate_queue_jobs", { state: "waiting" })).toBe(0);
      expect(valueOf(m, "gengate_queue_jobs", { state: "active" })).toBe(0);
      expect(valueOf(m, "gengate_circuit_open", { provider: "simulated" })).toBe(0);
      expect(valueOf(m, "gengate_jobs_in_flight")).toBe(0);
    });

    it("counts open WebSocket connections and their subscriptions", async () => {
      const running = await generate("a slow barn owl at dusk [sim:latency=60000]");
      const watcher = wsClient(server.url, key);
      const sub = watcher.subscribe(WATCH, { id: running.id });
      try {
        await sub.until((e) => e.generationUpdated.generation.status === "PROCESSING");
        const m = await scrape();
        expect(valueOf(m, "gengate_websocket_connections")).toBe(1);
        expect(valueOf(m, "gengate_websocket_subscriptions")).toBe(1);
      } finally {
        await gql(
          server.url,
          `mutation($id: ID!) { cancelGeneration(id: $id) { id } }`,
          { id: running.id },
          key,
        );
        await sub.until((e) => e.generationUpdated.generation.status === "CANCELED");
        await watcher.dispose();
      }
    });

    it("records the quality gate's score of each judged output", async () => {
      // One output was judged in the run (the refused request produced none; the hit was not).
      const m = await scrape();
      expect(valueOf(m, "gengate_quality_score_count", { model: ids.model })).toBe(1);
      expect(valueOf(m, "gengate_quality_score_sum", { model: ids.model })).toBe(1);
    });
  });

  describe("tracing", () => {
    it("puts the api's generate, the worker's submit step and the provider call in one trace", () => {
      const all = spans.getFinishedSpans();
      const about = (id: string) => all.filter((s) => s.attributes["gengate.generation.id"] === id);
      const api = about(ids.ok).find((s) => s.name === "generate");
      const submit = about(ids.ok).find((s) => s.name === "job submit");
      expect(api).toBeDefined();
      expect(submit).toBeDefined();
      const traceId = api!.spanContext().traceId;
      expect(submit!.spanContext().traceId).toBe(traceId);
      const provider = all.find(
        (s) =>
          s.name === "provider submit" &&
          s.parentSpanContext?.spanId === submit!.spanContext().spanId,
      );
      expect(provider).toBeDefined();
      expect(provider!.spanContext().traceId).toBe(traceId);
      // Every step of the generation (its status polls too) is in that trace, and no other.
      const steps = about(ids.ok).filter((s) => s.name.startsWith("job "));
      expect(steps.length).toBeGreaterThanOrEqual(1);
      expect(new Set(steps.map((s) => s.spanContext().traceId))).toEqual(new Set([traceId]));
      // Another generation is another trace.
      const other = about(ids.refused).find((s) => s.name === "generate");
      expect(other!.spanContext().traceId).not.toBe(traceId);
    });
  });

  describe("tracing of steps started outside a trace", () => {
    it("a step a webhook or the reconciler enqueues continues its generation's trace", async () => {
      const api = spans
        .getFinishedSpans()
        .find((s) => s.name === "generate" && s.attributes["gengate.generation.id"] === ids.ok)!;
      // Enqueued from no span at all, as a webhook's status check or the reconciler does.
      await server.app.queue.add(
        "poll",
        { generationId: ids.ok, attempt: 1, once: true },
        { jobId: `${ids.ok}-trace-check` },
      );
      const deadline = Date.now() + 10_000;
      let step;
      while (!step && Date.now() < deadline) {
        step = spans
          .getFinishedSpans()
          .find(
            (s) =>
              s.name === "job poll" &&
              s.attributes["messaging.message.id"] === `${ids.ok}-trace-check`,
          );
        if (!step) await new Promise((resolve) => setImmediate(resolve));
      }
      expect(step).toBeDefined();
      expect(step!.spanContext().traceId).toBe(api.spanContext().traceId);
    });
  });

  describe("logs", () => {
    it("puts the generation id and the trace id on every line about a generation", () => {
      const traceOf = (id: string) =>
        spans
          .getFinishedSpans()
          .find((s) => s.name === "generate" && s.attributes["gengate.generation.id"] === id)!
          .spanContext().traceId;
      const about = lines.filter((l) => typeof l.generationId === "string");
      expect(about.filter((l) => l.generationId === ids.ok).length).toBeGreaterThan(0);
      expect(about.filter((l) => l.generationId === ids.refused).length).toBeGreaterThan(0);
      for (const line of about) {
        expect(line.traceId).toMatch(/^[0-9a-f]{32}$/);
        if (line.generationId === ids.ok) expect(line.traceId).toBe(traceOf(ids.ok));
        if (line.generationId === ids.refused) expect(line.traceId).toBe(traceOf(ids.refused));
      }
    });

    it("never writes a prompt or an API key", () => {
      expect(raw.length).toBeGreaterThan(0);
      for (const line of raw) {
        expect(line).not.toContain(PROMPT);
        expect(line).not.toContain("grey heron");
        expect(line).not.toContain(key);
      }
    });
  });
});
