import http from "node:http";
import express from "express";
import { Metrics, metricsHandler, PROMETHEUS_CONTENT_TYPE } from "../../src/observability";
import { freePort } from "../helpers/ports";
import { parsePrometheusText, valueOf } from "../helpers/prometheus";

describe("GET /metrics", () => {
  const metrics = new Metrics();
  const broken = new Metrics();
  const errors: unknown[] = [];
  let server: http.Server;
  let baseUrl: string;

  beforeAll(async () => {
    await broken.shutdown();
    const app = express();
    app.get("/metrics", metricsHandler(metrics));
    app.get(
      "/broken/metrics",
      metricsHandler(broken, { error: (obj: unknown) => void errors.push(obj) }),
    );
    const port = await freePort();
    server = http.createServer(app);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    baseUrl = `http://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve, reject) =>
      server.close((err) => (err ? reject(err) : resolve())),
    );
    await metrics.shutdown();
  });

  it("serves what was recorded in the Prometheus text format", async () => {
    expect.assertions(5);
    metrics.cacheLookup("SEMANTIC", true, 0.004);
    metrics.generationCreated("sim-image-fast", "SUCCEEDED", true);

    const res = await fetch(`${baseUrl}/metrics`);

    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(PROMETHEUS_CONTENT_TYPE);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const text = parsePrometheusText(await res.text());
    expect(valueOf(text, "gengate_cache_lookups_total", { kind: "SEMANTIC", result: "hit" })).toBe(
      1,
    );
    expect(
      valueOf(text, "gengate_generations_total", {
        model: "sim-image-fast",
        status: "SUCCEEDED",
        cached: "true",
      }),
    ).toBe(1);
  });

  it("answers 500 and logs when collection fails", async () => {
    expect.assertions(3);

    const res = await fetch(`${baseUrl}/broken/metrics`);

    expect(res.status).toBe(500);
    expect(await res.text()).toBe("metrics collection failed\n");
    expect(errors).toHaveLength(1);
  });
});
