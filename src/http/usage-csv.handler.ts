import { stringify } from "csv-stringify/sync";
import type { Request, Response } from "express";
import type { AuthService } from "../auth/auth.service";
import { AppError, BadInputError } from "../common/errors";
import type { Logger } from "../common/logger";
import type { UsageGroup } from "../cost/usage.repository";
import type { UsageService } from "../cost/usage.service";

// A date (midnight UTC) or a date-time with its offset: nothing that Date would guess at.
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;

const STATUS: Record<string, number> = {
  BAD_USER_INPUT: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
};

/**
 * `GET /usage.csv?from=&to=&groupBy=DAY,MODEL&accountId=`: the `usage` query as a CSV
 * download, same credential and same rules. One line per group (or one line of totals
 * without groupBy); money in exact decimals with six places.
 */
export function usageCsvHandler(deps: { auth: AuthService; usage: UsageService; logger: Logger }) {
  return async (req: Request, res: Response): Promise<void> => {
    try {
      const viewer = await deps.auth.authenticate(req.headers.authorization);
      const query = req.query as Record<string, unknown>;
      const from = dateParam(query, "from");
      const to = dateParam(query, "to");
      const groupBy = listParam(query, "groupBy");
      const accountId = stringParam(query, "accountId");
      const report = await deps.usage.report(viewer, { from, to, groupBy, accountId });

      const dims = new Set(groupBy ?? []);
      const columns = [
        ...(dims.has("DAY") ? ["day"] : []),
        ...(dims.has("MODEL") ? ["model"] : []),
        ...(dims.has("PROVIDER") ? ["provider"] : []),
        ...(dims.has("USER") ? ["account_id", "user_id"] : []),
        "generations",
        "cost_usd",
        "cache_hits",
        "exact_hits",
        "semantic_hits",
        "inflight_hits",
        "saved_usd",
        "avg_duration_ms",
      ];
      const groups: UsageGroup[] =
        dims.size > 0 ? report.rows : [{ ...report, cacheHitsByKind: report.cacheHitsByKind }];
      const records = groups.map((g) => {
        const hits = (kind: string) => g.cacheHitsByKind.find((k) => k.kind === kind)?.hits ?? 0;
        const values: Record<string, unknown> = {
          day: g.day,
          model: g.model,
          provider: g.provider ?? "",
          account_id: g.accountId,
          user_id: g.userId,
          generations: g.generations,
          cost_usd: g.totalCostUsd,
          cache_hits: g.cacheHits,
          exact_hits: hits("EXACT"),
          semantic_hits: hits("SEMANTIC"),
          inflight_hits: hits("INFLIGHT"),
          saved_usd: g.savedUsd,
          avg_duration_ms: g.avgDurationMs === null ? "" : g.avgDurationMs.toFixed(1),
        };
        return columns.map((c) => values[c]);
      });
      const day = (d: Date) => d.toISOString().slice(0, 10);
      res.setHeader("content-type", "text/csv; charset=utf-8");
      res.setHeader(
        "content-disposition",
        `attachment; filename="usage-${day(from)}-${day(to)}.csv"`,
      );
      res.setHeader("cache-control", "private, no-store");
      res.send(stringify(records, { header: true, columns, record_delimiter: "windows" }));
    } catch (err) {
      if (err instanceof AppError) {
        const status = STATUS[err.code] ?? 400;
        if (status === 401) res.setHeader("www-authenticate", 'Bearer realm="gengate"');
        res.status(status).json({ error: err.message, code: err.code, ...err.extensions });
        return;
      }
      deps.logger.error({ err }, "usage export failed");
      res.status(500).json({ error: "internal error" });
    }
  };
}

function stringParam(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new BadInputError(name, "must be given once");
  return v;
}

function dateParam(query: Record<string, unknown>, name: string): Date {
  const v = stringParam(query, name);
  if (v === undefined) throw new BadInputError(name, "is required");
  const d = new Date(v);
  if (!ISO_DATE_TIME.test(v) || Number.isNaN(d.getTime())) {
    throw new BadInputError(name, "must be an ISO 8601 date or date-time with offset");
  }
  return d;
}

/** `groupBy=DAY,MODEL` or `groupBy=DAY&groupBy=MODEL`. */
function listParam(query: Record<string, unknown>, name: string): string[] | undefined {
  const v = query[name];
  if (v === undefined || v === "") return undefined;
  const items = Array.isArray(v) ? v : [v];
  if (!items.every((i): i is string => typeof i === "string")) {
    throw new BadInputError(name, "must be a comma-separated list");
  }
  return items.flatMap((i) => i.split(",")).map((i) => i.trim().toUpperCase());
}
