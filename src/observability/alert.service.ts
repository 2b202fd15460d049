import type { DataSource } from "typeorm";
import type { Logger } from "../common/logger";
import { BadInputError, ForbiddenError, NotFoundError } from "../common/errors";
import { isUuid, validateUserId } from "../auth/auth.service";
import { requireRole, requireViewer, type Viewer } from "../auth/viewer";
import { safePost, validateCallbackUrl } from "../callbacks/safe-http";
import type { AlertRow } from "../cost/budget.repository";
import type { QueueDriver } from "../infra/queue/queue.driver";
import { Topic, type PubSub, type Subscription } from "../infra/pubsub/pubsub";

export const MAX_ALERTS_PAGE = 200;
/** Webhook deliveries of one alert: the first and this many retries, backing off. */
const WEBHOOK_RETRIES = 4;
const WEBHOOK_TIMEOUT_MS = 10_000;

export type AlertSeverity = AlertRow["severity"];

/** An alert before it is stored; system alerts (a provider, a model) have no account. */
export type NewAlert = Omit<AlertRow, "id" | "createdAt">;

export interface AlertOptions {
  /** Tests only: alert webhooks may reach loopback and private addresses. */
  allowPrivate: boolean;
  /**
   * The operators' webhook (ALERT_WEBHOOK_URL): where system alerts, those of no account,
   * are sent. Unset: they are stored and published only.
   */
  operatorWebhookUrl?: string;
}

/**
 * Stored alerts (budget warnings, anomalies): published to live subscribers and sent to the
 * account's alert webhook, or the operators' one for a system alert (Slack-compatible JSON),
 * the delivery being a queue job that retries with backoff.
 */
export class AlertService {
  constructor(
    private readonly db: DataSource,
    private readonly pubsub: PubSub,
    private readonly queue: QueueDriver,
    private readonly opts: AlertOptions,
    private readonly logger: Logger,
  ) {}

  /** Stores an alert raised outside a transaction of its own (anomalies), then `raised`. */
  async raise(alert: NewAlert): Promise<AlertRow> {
    const [stored] = (await this.db.query(
      `INSERT INTO alerts (account_id, user_id, kind, severity, message, data)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb)
       RETURNING id, created_at`,
      [
        alert.accountId,
        alert.userId,
        alert.kind,
        alert.severity,
        alert.message,
        JSON.stringify(alert.data),
      ],
    )) as Array<{ id: string; created_at: Date }>;
    const row = { ...alert, id: stored!.id, createdAt: new Date(stored!.created_at).toISOString() };
    await this.raised([row]);
    return row;
  }

  /** After the transaction that stored them commits: publish, and schedule the webhooks. */
  async raised(alerts: AlertRow[]): Promise<void> {
    for (const alert of alerts) {
      try {
        await this.pubsub.publish(Topic.Alerts, "all", alert);
        if (alert.accountId) await this.pubsub.publish(Topic.AccountAlerts, alert.accountId, alert);
        // A system alert goes to the operators' webhook, when there is one.
        if (!alert.accountId && !this.opts.operatorWebhookUrl) continue;
        await this.queue.add(
          "alert",
          { generationId: "", alertId: alert.id, attempt: 0 },
          { jobId: `alert-${alert.id}-0` },
        );
      } catch (err) {
        this.logger.error({ err, alertId: alert.id }, "alert not published");
      }
    }
  }

  /** ADMIN: every alert; PARTNER: its account's. Newest first. */
  async list(viewer: Viewer | null, first: number | null | undefined): Promise<AlertRow[]> {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    const n = first ?? 50;
    if (!Number.isInteger(n) || n < 1 || n > MAX_ALERTS_PAGE) {
      throw new BadInputError("first", `must be an integer from 1 to ${MAX_ALERTS_PAGE}`);
    }
    const rows = (await this.db.query(
      v.role === "ADMIN"
        ? `SELECT * FROM alerts ORDER BY created_at DESC, id DESC LIMIT $1`
        : `SELECT * FROM alerts WHERE account_id = $2 ORDER BY created_at DESC, id DESC LIMIT $1`,
      v.role === "ADMIN" ? [n] : [n, v.accountId],
    )) as Array<{
      id: string;
      account_id: string | null;
      user_id: string | null;
      kind: string;
      severity: AlertRow["severity"];
      message: string;
      data: Record<string, unknown>;
      created_at: Date;
    }>;
    return rows.map((r) => ({
      id: r.id,
      accountId: r.account_id,
      userId: r.user_id,
      kind: r.kind,
      severity: r.severity,
      message: r.message,
      data: r.data,
      createdAt: new Date(r.created_at).toISOString(),
    }));
  }

  /** ADMIN: every alert as it is raised. */
  watchAll(viewer: Viewer | null): Subscription<AlertRow> {
    requireRole(viewer, "ADMIN");
    return this.pubsub.subscribe(Topic.Alerts, "all");
  }

  /**
   * Budget alerts of the viewer's account (a PARTNER may narrow to one user; a client token
   * sees its own user's only).
   */
  watchBudget(
    viewer: Viewer | null,
    userId: string | null | undefined,
  ): AsyncIterableIterator<AlertRow> {
    const v = requireViewer(viewer);
    if (userId != null) validateUserId(userId);
    if (v.role === "CLIENT" && userId != null && userId !== v.userId) {
      throw new ForbiddenError("A client token sees its own user only");
    }
    const only = v.role === "CLIENT" ? v.userId! : (userId ?? null);
    const sub = this.pubsub.subscribe(Topic.AccountAlerts, v.accountId);
    return filtered(
      sub,
      (a) => a.kind.includes("BUDGET") && (only === null ? true : a.userId === only),
    );
  }

  /** The account's alert webhook (its own for a PARTNER, any for ADMIN); null removes it. */
  async setWebhook(
    viewer: Viewer | null,
    url: string | null | undefined,
    accountId: string | null | undefined,
  ): Promise<string | null> {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    if (accountId != null && !isUuid(accountId)) {
      throw new BadInputError("accountId", "must be a UUID");
    }
    if (accountId != null && accountId !== v.accountId && v.role !== "ADMIN") {
      throw new NotFoundError("No such account");
    }
    let normalized: string | null = null;
    if (url != null) {
      if (url.length > 2048) throw new BadInputError("url", "must be at most 2048 characters");
      try {
        normalized = await validateCallbackUrl(url, { allowPrivate: this.opts.allowPrivate });
      } catch (err) {
        throw new BadInputError("url", (err as Error).message);
      }
    }
    const [, count] = (await this.db.query(
      `UPDATE accounts SET alert_webhook_url = $2 WHERE id = $1`,
      [accountId ?? v.accountId, normalized],
    )) as [unknown, number];
    if (count === 0) throw new NotFoundError("No such account");
    return normalized;
  }

  /**
   * The `alert` job: one delivery attempt; a failure schedules the next with backoff. An
   * account's alert goes to its webhook; a system alert to the operators' (trusted
   * configuration, so it may be a private address such as an internal relay).
   */
  async deliver(alertId: string, attempt: number): Promise<void> {
    const [row] = (await this.db.query(
      `SELECT al.id, al.kind, al.severity, al.message, al.data, al.created_at, al.account_id,
              a.alert_webhook_url AS url
         FROM alerts al LEFT JOIN accounts a ON a.id = al.account_id
        WHERE al.id = $1`,
      [alertId],
    )) as Array<{
      id: string;
      kind: string;
      severity: string;
      message: string;
      data: Record<string, unknown>;
      created_at: Date;
      account_id: string | null;
      url: string | null;
    }>;
    if (!row) return;
    const system = row.account_id === null;
    const url = system ? this.opts.operatorWebhookUrl : row.url;
    if (!url) return;
    // Slack's incoming-webhook shape (`text`), with the alert itself beside it for machines.
    const body = JSON.stringify({
      text: `[${row.severity}] ${row.message}`,
      alert: {
        id: row.id,
        kind: row.kind,
        severity: row.severity,
        message: row.message,
        data: row.data,
        accountId: row.account_id,
        createdAt: new Date(row.created_at).toISOString(),
      },
    });
    try {
      const res = await safePost(
        url,
        body,
        { "content-type": "application/json", "user-agent": "gengate-alerts" },
        { timeoutMs: WEBHOOK_TIMEOUT_MS, allowPrivate: system || this.opts.allowPrivate },
      );
      if (res.status >= 200 && res.status < 300) return;
      throw new Error(`alert webhook answered ${res.status}`);
    } catch (err) {
      if (attempt >= WEBHOOK_RETRIES) {
        this.logger.warn({ err, alertId, attempt }, "alert webhook gave up");
        return;
      }
      this.logger.info(
        { err: (err as Error).message, alertId, attempt },
        "alert webhook failed; retrying",
      );
      await this.queue.add(
        "alert",
        { generationId: "", alertId, attempt: attempt + 1 },
        { jobId: `alert-${alertId}-${attempt + 1}`, delayMs: 1000 * 4 ** attempt },
      );
    }
  }
}

function filtered<T>(sub: Subscription<T>, keep: (value: T) => boolean): AsyncIterableIterator<T> {
  return {
    async next() {
      for (;;) {
        const r = await sub.next();
        if (r.done || keep(r.value)) return r;
      }
    },
    return: () => sub.return(),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
