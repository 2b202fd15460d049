import http from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import type { Logger } from "../common/logger";
import { metricsHandler, type Metrics } from "../observability";

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * A listener that serves only `GET /metrics` (and `/healthz`): how a worker process, which has
 * no api server, is scraped. Its counts are the process's own, like an api's.
 */
export async function startMetricsServer(
  metrics: Metrics,
  opts: { port: number; host: string; logger: Logger },
): Promise<MetricsServer> {
  const app = express();
  app.disable("x-powered-by");
  app.get("/metrics", metricsHandler(metrics, opts.logger));
  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  opts.logger.info({ port }, "metrics listening");
  return {
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** The port of the metrics listener for a role, or null for none (api and all serve /metrics on PORT). */
export function metricsPortFor(
  setting: number | "off" | undefined,
  roles: { api: boolean; worker: boolean },
): number | null {
  if (setting === "off") return null;
  if (setting !== undefined) return setting;
  return roles.api ? null : DEFAULT_WORKER_METRICS_PORT;
}

/** Prometheus' conventional exporter port. */
export const DEFAULT_WORKER_METRICS_PORT = 9464;
