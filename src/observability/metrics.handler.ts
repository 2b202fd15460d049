import type { RequestHandler } from "express";
import type { Logger } from "../common/logger";
import type { Metrics } from "./metrics";

/** The Prometheus text exposition format, the one every scraper accepts. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** `GET /metrics`: the current values for a Prometheus scrape. */
export function metricsHandler(
  metrics: Pick<Metrics, "prometheusText">,
  logger?: Pick<Logger, "error">,
): RequestHandler {
  return async (_req, res) => {
    let text: string;
    try {
      text = await metrics.prometheusText();
    } catch (err) {
      logger?.error({ err }, "metrics collection failed");
      // A 500 marks the scrape failed (`up` 0) instead of recording a partial or empty set.
      res.status(500).type("text/plain").send("metrics collection failed\n");
      return;
    }
    res.setHeader("content-type", PROMETHEUS_CONTENT_TYPE);
    res.setHeader("cache-control", "no-store");
    res.send(text);
  };
}
