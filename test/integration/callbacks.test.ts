import { BudgetRepository } from "../../src/cost/budget.repository";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { DataSource } from "typeorm";
import { Callbacks1764290000000 } from "../../migrations/1764290000000-callbacks";
import {
  CALLBACK_JOB,
  CallbackDeliveryError,
  CallbackRefusedError,
  CallbackRepository,
  CallbackService,
  DEFAULT_CALLBACK_SCHEDULE_MS,
  callbackAgent,
  callbackJobId,
  safePost,
  validateCallbackUrl,
  type CallbackJobData,
  type CallbackPoster,
  type CallbackQueue,
  type CallbackServiceOptions,
  type LookupFunction,
} from "../../src/callbacks";
import { createLogger } from "../../src/common/logger";
import { ENTITIES } from "../../src/entities";
import { CallbackDeliveryEntity } from "../../src/entities/callback-delivery.entity";
import type { GenerationSnapshot } from "../../src/generation/generation.events";
import { GenerationRepository } from "../../src/generation/generation.repository";
import type { EnqueueOptions } from "../../src/infra/queue/queue.driver";
import { createTestEnv, type TestEnv } from "../helpers/test-app";

// ---------------------------------------------------------------------------------------------
// Local receivers and a queue that records what is scheduled

interface Received {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

interface Reply {
  status: number;
  headers?: Record<string, string>;
  /** Never answer (for timeouts). */
  hang?: boolean;
}

/** A real HTTP server on 127.0.0.1 that records each request and answers from a script. */
class Receiver {
  readonly received: Received[] = [];
  private readonly script: Reply[] = [];

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static async start(port = 0): Promise<Receiver> {
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    const receiver = new Receiver(server, (server.address() as AddressInfo).port);
    server.on("request", (req, res) => receiver.handle(req, res));
    receivers.push(receiver);
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The next answers, in order; after them, 200. */
  reply(...replies: Reply[]): this {
    this.script.push(...replies);
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
      this.received.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      const reply = this.script.shift() ?? { status: 200 };
      if (reply.hang) return;
      res.writeHead(reply.status, reply.headers).end("ok");
    });
  }
}

const receivers: Receiver[] = [];

/** A port on which nothing listens (connection refused), free to listen on later. */
async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface QueuedJob {
  name: string;
  data: CallbackJobData;
  opts: EnqueueOptions;
}

/**
 * The QueueDriver's `add` and `restore`, recorded: these tests run each job by calling
 * `deliver()`, so no job is ever still there to keep `restore` from adding.
 */
class RecordingQueue implements CallbackQueue {
  readonly jobs: QueuedJob[] = [];
  async add(name: typeof CALLBACK_JOB, data: CallbackJobData, opts: EnqueueOptions) {
    this.jobs.push({ name, data, opts });
  }
  async restore(name: typeof CALLBACK_JOB, data: CallbackJobData, opts: EnqueueOptions) {
    await this.add(name, data, opts);
    return true;
  }
}

/** A DNS answer that changed since the URL was checked: the name now points at loopback. */
function lookupTo(address: string, calls: string[] = []): LookupFunction {
  return (hostname, options, callback) => {
    calls.push(hostname);
    if (options.all) callback(null, [{ address, family: 4 }]);
    else callback(null, address, 4);
  };
}

// ---------------------------------------------------------------------------------------------
// Database

let env: TestEnv;
let ds: DataSource;
let repo: CallbackRepository;
let generations: GenerationRepository;
const logger = createLogger("silent");

beforeAll(async () => {
  env = await createTestEnv();
  ds = new DataSource({
    type: "postgres",
    url: env.databaseUrl,
    entities: [...ENTITIES, CallbackDeliveryEntity],
    synchronize: false,
  });
  await ds.initialize();
  // Until the migration joins MIGRATIONS, the template database does not have it.
  if (!(await hasCallbackTables())) await runMigration("up");
  repo = new CallbackRepository(ds);
  generations = new GenerationRepository(
    ds,
    new BudgetRepository(ds, { FREE: 5, PRO: 100, ENTERPRISE: 10000 }),
  );
});

afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

afterAll(async () => {
  await ds?.destroy();
  await env?.cleanup();
});

async function hasCallbackTables(): Promise<boolean> {
  const [row] = await ds.query(
    `SELECT to_regclass('public.callback_deliveries') IS NOT NULL AS deliveries,
            EXISTS (SELECT 1 FROM information_schema.columns
                     WHERE table_name = 'accounts' AND column_name = 'callback_secret') AS secret`,
  );
  return row.deliveries && row.secret;
}

async function runMigration(direction: "up" | "down"): Promise<void> {
  const runner = ds.createQueryRunner();
  try {
    await new Callbacks1764290000000()[direction](runner);
  } finally {
    await runner.release();
  }
}

/** A finished generation of a new account (so each test starts with no signing secret). */
async function finishedGeneration(
  opts: {
    status?: "SUCCEEDED" | "FAILED" | "CANCELED";
    callbackUrl?: string;
    metadata?: unknown;
  } = {},
): Promise<GenerationSnapshot> {
  const status = opts.status ?? "SUCCEEDED";
  const [account] = await ds.query(`INSERT INTO accounts (name) VALUES ('acme') RETURNING id`);
  const [user] = await ds.query(
    `INSERT INTO end_users (account_id, user_id) VALUES ($1, 'user-1') RETURNING id`,
    [account.id],
  );
  const outputs =
    status === "SUCCEEDED"
      ? [
          {
            key: "generations/x/1-0.png",
            contentType: "image/png",
            width: 64,
            height: 64,
            bytes: 90,
          },
        ]
      : [];
  const error =
    status === "FAILED"
      ? { code: "PROVIDER_ERROR", message: "the provider failed", retryable: false }
      : null;
  const [g] = await ds.query(
    `INSERT INTO generations
       (account_id, end_user_id, user_id, status, progress, media_type, prompt, model, provider,
        seed, priority, params, outputs, estimated_cost_usd, cost_usd, error, request_hash,
        started_at, completed_at)
     VALUES ($1, $2, 'user-1', $3, 1, 'IMAGE', 'a cat', 'sim-image', 'simulated', 7, 'STANDARD',
             $4::jsonb, $5::jsonb, 0.004, $6, $7::jsonb, 'hash', now(), now())
     RETURNING id`,
    [
      account.id,
      user.id,
      status,
      JSON.stringify({
        ...(opts.callbackUrl ? { callbackUrl: opts.callbackUrl } : {}),
        ...(opts.metadata !== undefined ? { metadata: opts.metadata } : {}),
      }),
      JSON.stringify(outputs),
      status === "SUCCEEDED" ? "0.004" : null,
      error ? JSON.stringify(error) : null,
    ],
  );
  return (await generations.findSnapshot(g.id))!;
}

async function deliveryRow(id: string) {
  const [row] = await ds.query(
    `SELECT status, attempt, http_status, error, message_id, next_attempt_at, delivered_at
       FROM callback_deliveries WHERE id = $1`,
    [id],
  );
  return row as {
    status: string;
    attempt: number;
    http_status: number | null;
    error: string | null;
    message_id: string;
    next_attempt_at: Date | null;
    delivered_at: Date | null;
  };
}

async function accountSecret(accountId: string): Promise<string | null> {
  const [row] = await ds.query(`SELECT callback_secret FROM accounts WHERE id = $1`, [accountId]);
  return row.callback_secret;
}

const outputLinks = (g: GenerationSnapshot) =>
  g.outputs.map((o) => ({
    url: `https://files.test/${o.key}?sig=test`,
    contentType: o.contentType,
    width: o.width,
    height: o.height,
    bytes: o.bytes,
  }));

/** A service on a clock the test moves, with a recording queue. */
function callbacks(opts: CallbackServiceOptions = {}, post?: CallbackPoster) {
  const queue = new RecordingQueue();
  let now = Date.now();
  const service = new CallbackService(
    repo,
    queue,
    generations,
    outputLinks,
    logger,
    { timeoutMs: 5000, ...opts, clock: () => now },
    post,
  );
  return {
    service,
    queue,
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

function headersOf(r: Received) {
  return {
    "webhook-id": r.headers["webhook-id"]!,
    "webhook-timestamp": r.headers["webhook-timestamp"]!,
    "webhook-signature": r.headers["webhook-signature"]!,
  };
}

// ---------------------------------------------------------------------------------------------

describe("the callbacks migration", () => {
  it("goes down and up again", async () => {
    await runMigration("down");
    expect(await ds.query(`SELECT to_regclass('public.callback_deliveries') AS t`)).toEqual([
      { t: null },
    ]);
    expect(await hasCallbackTables()).toBe(false);
    await runMigration("up");
    expect(await hasCallbackTables()).toBe(true);
    const indexes = await ds.query(
      `SELECT indexname FROM pg_indexes WHERE tablename = 'callback_deliveries' ORDER BY 1`,
    );
    expect(indexes.map((i: { indexname: string }) => i.indexname)).toEqual([
      "callback_deliveries_due_idx",
      "callback_deliveries_generation_event_key",
      "callback_deliveries_pkey",
    ]);
  });
});

describe("callback delivery", () => {
  it("POSTs a Standard Webhooks message that verifies with the account's secret", async () => {
    const receiver = await Receiver.start();
    const g = await finishedGeneration({ metadata: { order: 7 } });
    const { service, queue, now } = callbacks({ allowPrivate: true });
    expect(await accountSecret(g.accountId)).toBeNull();

    const d = await service.enqueue(g, "SUCCEEDED", `${receiver.url}/hooks?x=1`);
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "PENDING",
      attempt: 0,
      message_id: d.id,
      http_status: null,
    });
    expect(queue.jobs).toEqual([
      {
        name: "callback",
        data: { generationId: g.id, deliveryId: d.id },
        opts: { jobId: callbackJobId(d.id, 1) },
      },
    ]);

    await service.deliver(d.id);

    expect(receiver.received).toHaveLength(1);
    const [req] = receiver.received as [Received];
    expect(req.method).toBe("POST");
    expect(req.url).toBe("/hooks?x=1");
    expect(req.headers["content-type"]).toBe("application/json");
    expect(req.headers["user-agent"]).toBe("gengate-callbacks/1");
    expect(req.headers["webhook-id"]).toBe(d.id);
    expect(req.headers["webhook-timestamp"]).toBe(String(Math.floor(now() / 1000)));
    const secret = await accountSecret(g.accountId);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(new Webhook(secret!).verify(req.body, headersOf(req))).toEqual({
      type: "generation.succeeded",
      timestamp: g.completedAt,
      data: {
        id: g.id,
        userId: "user-1",
        status: "SUCCEEDED",
        mediaType: "IMAGE",
        model: "sim-image",
        provider: "simulated",
        cached: false,
        costUsd: 0.004,
        outputs: [
          {
            url: "https://files.test/generations/x/1-0.png?sig=test",
            contentType: "image/png",
            width: 64,
            height: 64,
            bytes: 90,
          },
        ],
        error: null,
        metadata: { order: 7 },
        createdAt: g.createdAt,
        completedAt: g.completedAt,
      },
    });
    expect(() =>
      new Webhook(`whsec_${Buffer.alloc(24, 1).toString("base64")}`).verify(
        req.body,
        headersOf(req),
      ),
    ).toThrow("No matching signature found");

    expect(await deliveryRow(d.id)).toMatchObject({
      status: "DELIVERED",
      attempt: 1,
      http_status: 200,
      error: null,
      next_attempt_at: null,
      delivered_at: new Date(now()),
    });
    expect(queue.jobs).toHaveLength(1);

    // The job running twice, or the lifecycle enqueueing twice, sends nothing more.
    await service.deliver(d.id);
    const again = await service.enqueue(g, "SUCCEEDED", `${receiver.url}/hooks?x=1`);
    expect(again.id).toBe(d.id);
    expect(receiver.received).toHaveLength(1);
    expect(queue.jobs).toHaveLength(1);
  });

  it("retries a 500 after the first wait and delivers with the same webhook-id", async () => {
    const receiver = (await Receiver.start()).reply({ status: 500 });
    const g = await finishedGeneration();
    const { service, queue, now, advance } = callbacks({ allowPrivate: true });
    const d = await service.enqueue(g, "SUCCEEDED", receiver.url);

    await service.deliver(d.id);
    const wait = DEFAULT_CALLBACK_SCHEDULE_MS[0]!;
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "PENDING",
      attempt: 1,
      http_status: 500,
      error: "HTTP 500",
      next_attempt_at: new Date(now() + wait),
      delivered_at: null,
    });
    expect(queue.jobs[1]).toEqual({
      name: "callback",
      data: { generationId: g.id, deliveryId: d.id },
      opts: { jobId: callbackJobId(d.id, 2), delayMs: wait },
    });

    // Too early: a stray duplicate of the job does nothing.
    await service.deliver(d.id);
    expect(receiver.received).toHaveLength(1);

    advance(wait);
    await service.deliver(d.id);
    expect(receiver.received).toHaveLength(2);
    const [first, second] = receiver.received as [Received, Received];
    expect(second.headers["webhook-id"]).toBe(first.headers["webhook-id"]);
    expect(second.body).toBe(first.body);
    const secret = (await accountSecret(g.accountId))!;
    expect(new Webhook(secret).verify(second.body, headersOf(second))).toMatchObject({
      type: "generation.succeeded",
    });
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "DELIVERED",
      attempt: 2,
      http_status: 200,
      error: null,
      next_attempt_at: null,
      delivered_at: new Date(now()),
    });
    expect(queue.jobs).toHaveLength(2);
  });

  it("delivers to a receiver that was down once it is up", async () => {
    const port = await freePort();
    const g = await finishedGeneration();
    const { service, queue, now, advance } = callbacks({ allowPrivate: true });
    const d = await service.enqueue(g, "SUCCEEDED", `http://127.0.0.1:${port}/cb`);

    await service.deliver(d.id);
    const row = await deliveryRow(d.id);
    expect(row).toMatchObject({
      status: "PENDING",
      attempt: 1,
      http_status: null,
      next_attempt_at: new Date(now() + DEFAULT_CALLBACK_SCHEDULE_MS[0]!),
    });
    expect(row.error).toContain("ECONNREFUSED");
    expect(queue.jobs.map((j) => j.opts)).toEqual([
      { jobId: callbackJobId(d.id, 1) },
      { jobId: callbackJobId(d.id, 2), delayMs: DEFAULT_CALLBACK_SCHEDULE_MS[0] },
    ]);

    const receiver = await Receiver.start(port);
    advance(DEFAULT_CALLBACK_SCHEDULE_MS[0]!);
    await service.deliver(d.id);
    expect(receiver.received).toHaveLength(1);
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "DELIVERED",
      attempt: 2,
      http_status: 200,
      error: null,
    });
  });

  it("keeps retrying for more than an hour, then records the delivery FAILED", async () => {
    const attempts = DEFAULT_CALLBACK_SCHEDULE_MS.length + 1;
    const receiver = (await Receiver.start()).reply(
      ...Array.from({ length: attempts }, () => ({ status: 503 })),
    );
    const g = await finishedGeneration();
    const { service, queue, advance } = callbacks({ allowPrivate: true });
    const d = await service.enqueue(g, "SUCCEEDED", receiver.url);

    for (let n = 1; n <= attempts; n++) {
      await service.deliver(d.id);
      expect(receiver.received).toHaveLength(n);
      const row = await deliveryRow(d.id);
      expect(row.attempt).toBe(n);
      expect(row.status).toBe(n < attempts ? "PENDING" : "FAILED");
      const next = queue.jobs[n];
      if (next) advance(next.opts.delayMs!);
    }
    const delays = queue.jobs.slice(1).map((j) => j.opts.delayMs!);
    expect(delays).toEqual(DEFAULT_CALLBACK_SCHEDULE_MS);
    expect(delays.reduce((a, b) => a + b, 0)).toBeGreaterThan(3600_000);
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "FAILED",
      attempt: attempts,
      http_status: 503,
      error: "HTTP 503",
      next_attempt_at: null,
      delivered_at: null,
    });
    // Every attempt carried the same message id.
    expect(new Set(receiver.received.map((r) => r.headers["webhook-id"]))).toEqual(new Set([d.id]));
  });

  it("waits as long as a 429's Retry-After asks when that is longer than the schedule", async () => {
    const receiver = (await Receiver.start()).reply({
      status: 429,
      headers: { "retry-after": "120" },
    });
    const g = await finishedGeneration();
    const { service, queue, now } = callbacks({ allowPrivate: true });
    const d = await service.enqueue(g, "SUCCEEDED", receiver.url);
    await service.deliver(d.id);
    expect(queue.jobs[1]!.opts).toEqual({ jobId: callbackJobId(d.id, 2), delayMs: 120_000 });
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "PENDING",
      attempt: 1,
      http_status: 429,
      next_attempt_at: new Date(now() + 120_000),
    });
  });

  it("gives up at once when the receiver answers 410 Gone", async () => {
    const receiver = (await Receiver.start()).reply({ status: 410 });
    const g = await finishedGeneration();
    const { service, queue } = callbacks({ allowPrivate: true });
    const d = await service.enqueue(g, "SUCCEEDED", receiver.url);
    await service.deliver(d.id);
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "FAILED",
      attempt: 1,
      http_status: 410,
      error: "HTTP 410 Gone: the receiver asked to stop",
      next_attempt_at: null,
    });
    expect(queue.jobs).toHaveLength(1);
  });

  it("does not follow a redirect: the 3xx is a failed attempt and the target gets nothing", async () => {
    const target = await Receiver.start();
    const redirector = (await Receiver.start()).reply(
      { status: 302, headers: { location: `${target.url}/elsewhere` } },
      { status: 307, headers: { location: "http://169.254.169.254/latest/meta-data/" } },
    );
    const g = await finishedGeneration();
    const { service, queue, advance } = callbacks({ allowPrivate: true });
    const d = await service.enqueue(g, "SUCCEEDED", redirector.url);

    await service.deliver(d.id);
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "PENDING",
      attempt: 1,
      http_status: 302,
      error: `HTTP 302: redirects are not followed (to ${target.url}/elsewhere)`,
    });
    advance(queue.jobs[1]!.opts.delayMs!);
    await service.deliver(d.id);
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "PENDING",
      attempt: 2,
      http_status: 307,
    });
    expect(redirector.received).toHaveLength(2);
    expect(target.received).toHaveLength(0);
  });

  it("sends a failed generation's error with type generation.failed", async () => {
    const receiver = await Receiver.start();
    const g = await finishedGeneration({ status: "FAILED", callbackUrl: receiver.url });
    const { service } = callbacks({ allowPrivate: true });

    const d = await service.notify(g, "FAILED");
    expect(d).not.toBeNull();
    await service.deliver(d!.id);
    const [req] = receiver.received as [Received];
    const payload = new Webhook((await accountSecret(g.accountId))!).verify(
      req.body,
      headersOf(req),
    );
    expect(payload).toMatchObject({
      type: "generation.failed",
      data: {
        status: "FAILED",
        outputs: [],
        costUsd: null,
        error: { code: "PROVIDER_ERROR", message: "the provider failed", retryable: false },
      },
    });
    expect(await deliveryRow(d!.id)).toMatchObject({ status: "DELIVERED", attempt: 1 });

    // A generation without a callbackUrl records nothing.
    expect(await service.notify(await finishedGeneration(), "SUCCEEDED")).toBeNull();
  });

  it("counts its own failure before sending as an attempt, so that the schedule still ends", async () => {
    const receiver = await Receiver.start();
    const g = await finishedGeneration();
    const queue = new RecordingQueue();
    const broken = () => {
      throw new Error("object store unreachable");
    };
    const service = new CallbackService(repo, queue, generations, broken, logger, {
      allowPrivate: true,
      schedule: [],
    });
    const d = await service.enqueue(g, "SUCCEEDED", receiver.url);
    await service.deliver(d.id);
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "FAILED",
      attempt: 1,
      http_status: null,
      error: "internal error before sending",
    });
    expect(receiver.received).toHaveLength(0);
  });

  it("puts back the job of a pending delivery once it is overdue", async () => {
    const receiver = (await Receiver.start()).reply({ status: 500 });
    const g = await finishedGeneration();
    const { service, queue, advance } = callbacks({ allowPrivate: true });
    const d = await service.enqueue(g, "SUCCEEDED", receiver.url);
    await service.deliver(d.id);
    expect(queue.jobs).toHaveLength(2);
    /** The jobs a reconciler pass adds for this delivery (other tests' rows may be due too). */
    const requeued = async () => {
      const before = queue.jobs.length;
      await service.requeueDue(60_000);
      return queue.jobs.slice(before).filter((j) => j.data.deliveryId === d.id);
    };

    // Due in 5 s: nothing to put back before, nor within the minute of grace after.
    expect(await requeued()).toEqual([]);
    advance(DEFAULT_CALLBACK_SCHEDULE_MS[0]! + 59_000);
    expect(await requeued()).toEqual([]);
    advance(2_000);
    expect(await requeued()).toEqual([
      {
        name: "callback",
        data: { generationId: g.id, deliveryId: d.id },
        opts: { jobId: callbackJobId(d.id, 2) },
      },
    ]);

    await service.deliver(d.id);
    expect(await deliveryRow(d.id)).toMatchObject({ status: "DELIVERED", attempt: 2 });
    expect(await requeued()).toEqual([]);
  });
});

describe("callbacks recorded with the finish", () => {
  it("the transaction that finishes a generation records its delivery: a crash before the job is added loses nothing", async () => {
    const receiver = await Receiver.start();
    const g = await finishedGeneration({ callbackUrl: receiver.url });
    // Make it a running generation again, with its attempt, as the worker sees it.
    await ds.query(
      `UPDATE generations SET status = 'PROCESSING', completed_at = NULL, cost_usd = NULL WHERE id = $1`,
      [g.id],
    );
    await ds.query(
      `INSERT INTO attempts (generation_id, number, provider, model, status, started_at)
       VALUES ($1, 1, 'simulated', 'sim-image', 'RUNNING', now())`,
      [g.id],
    );
    const done = await generations.succeed(g.id, 1, [], 0.004, null);
    expect(done?.generation.status).toBe("SUCCEEDED");
    // No notify(): the process died right after the commit.
    const [row] = (await ds.query(
      `SELECT id, status, attempt, event, url FROM callback_deliveries WHERE generation_id = $1`,
      [g.id],
    )) as Array<{ id: string; status: string; attempt: number; event: string; url: string }>;
    expect(row).toMatchObject({
      status: "PENDING",
      attempt: 0,
      event: "SUCCEEDED",
      url: receiver.url,
    });
    const { service, queue, advance } = callbacks({ allowPrivate: true });
    advance(61_000);
    await service.requeueDue(60_000);
    const job = queue.jobs.find((j) => j.data.deliveryId === row!.id);
    expect(job).toBeDefined();
    await service.deliver(row!.id);
    expect(await deliveryRow(row!.id)).toMatchObject({ status: "DELIVERED" });
    expect(receiver.received).toHaveLength(1);
  });
});

describe("SSRF: with private addresses refused (the production setting)", () => {
  let receiver: Receiver;
  beforeEach(async () => {
    // Listening, so that any request that got through would be seen here.
    receiver = await Receiver.start();
  });

  const targets: Array<[string, (port: number) => string]> = [
    ["loopback 127.0.0.1", (p) => `http://127.0.0.1:${p}/cb`],
    ["loopback ::1", (p) => `http://[::1]:${p}/cb`],
    ["private 10.x", (p) => `http://10.1.2.3:${p}/cb`],
    ["private 192.168.x", (p) => `http://192.168.0.10:${p}/cb`],
    ["cloud metadata 169.254.169.254", () => "http://169.254.169.254/latest/meta-data/"],
    ["link-local 169.254.x", (p) => `http://169.254.1.1:${p}/cb`],
    ["unspecified 0.0.0.0", (p) => `http://0.0.0.0:${p}/cb`],
    ["localhost", (p) => `http://localhost:${p}/cb`],
    ["a subdomain of localhost", (p) => `http://api.localhost:${p}/cb`],
    ["metadata.google.internal", () => "http://metadata.google.internal/computeMetadata/v1/"],
    ["decimal 2130706433", (p) => `http://2130706433:${p}/cb`],
    ["hex 0x7f.1", (p) => `http://0x7f.1:${p}/cb`],
    ["octal 0177.0.0.1", (p) => `http://0177.0.0.1:${p}/cb`],
    ["IPv4-mapped ::ffff:127.0.0.1", (p) => `http://[::ffff:127.0.0.1]:${p}/cb`],
    ["unique local fd00::1", (p) => `http://[fd00::1]:${p}/cb`],
    ["link-local fe80::1", (p) => `http://[fe80::1]:${p}/cb`],
  ];

  it.each(targets)("refuses %s when given", async (_name, url) => {
    await expect(validateCallbackUrl(url(receiver.port))).rejects.toBeInstanceOf(
      CallbackRefusedError,
    );
  });

  it.each(targets)(
    "refuses %s at delivery: REFUSED, never retried, nothing sent",
    async (_name, url) => {
      const g = await finishedGeneration();
      const { service, queue } = callbacks();
      const d = await service.enqueue(g, "SUCCEEDED", url(receiver.port));
      await service.deliver(d.id);
      const row = await deliveryRow(d.id);
      expect(row).toMatchObject({
        status: "REFUSED",
        attempt: 1,
        http_status: null,
        next_attempt_at: null,
      });
      expect(row.error).toMatch(/not allowed|forbidden/);
      expect(queue.jobs).toHaveLength(1);
      expect(receiver.received).toHaveLength(0);
    },
  );

  it("refuses a name when any of its DNS answers is forbidden", async () => {
    const url = `http://hooks.example.test:${receiver.port}/cb`;
    await expect(
      validateCallbackUrl(url, { resolve: async () => ["93.184.216.34", "10.0.0.7"] }),
    ).rejects.toThrow("host hooks.example.test resolves to a private address");
    await expect(
      validateCallbackUrl(url, { resolve: async () => ["169.254.169.254"] }),
    ).rejects.toThrow("resolves to a cloud metadata address");
    await expect(
      validateCallbackUrl(url, { resolve: async () => ["2606:4700::1", "::ffff:127.0.0.1"] }),
    ).rejects.toThrow("resolves to a loopback (IPv4-mapped) address");
    await expect(
      validateCallbackUrl(url, {
        resolve: async () => {
          throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
        },
      }),
    ).rejects.toThrow("does not resolve");
  });

  it("accepts a public name and refuses it at connect time once its DNS answer changes to loopback", async () => {
    const url = `http://hooks.example.test:${receiver.port}/cb`;
    // When given, the name resolves to a public address: accepted.
    await expect(
      validateCallbackUrl(url, { resolve: async () => ["93.184.216.34"] }),
    ).resolves.toBe(url);

    // At delivery, the connection's own lookup answers 127.0.0.1 (DNS rebinding).
    const lookups: string[] = [];
    const rebound: CallbackPoster = (u, body, headers, o) =>
      safePost(u, body, headers, { ...o, lookup: lookupTo("127.0.0.1", lookups) });
    const g = await finishedGeneration();
    const { service, queue } = callbacks({}, rebound);
    const d = await service.enqueue(g, "SUCCEEDED", url);
    await service.deliver(d.id);

    expect(lookups).toEqual(["hooks.example.test"]);
    expect(receiver.received).toHaveLength(0);
    expect(await deliveryRow(d.id)).toMatchObject({
      status: "REFUSED",
      attempt: 1,
      error: "host hooks.example.test leads to a forbidden address at connect time",
      next_attempt_at: null,
    });
    expect(queue.jobs).toHaveLength(1);

    // The control: with private addresses allowed, the same lookup does reach the receiver.
    const allowed = callbacks({ allowPrivate: true }, rebound);
    const g2 = await finishedGeneration();
    const d2 = await allowed.service.enqueue(g2, "SUCCEEDED", url);
    await allowed.service.deliver(d2.id);
    expect(receiver.received).toHaveLength(1);
    expect(await deliveryRow(d2.id)).toMatchObject({ status: "DELIVERED" });
  });

  it("the connect-time filter (request-filtering-agent) refuses by itself, after DNS", async () => {
    const agent = await callbackAgent("http:", false);
    const attempt = (url: string, lookup?: LookupFunction) =>
      new Promise<Error>((resolve) => {
        const req = http.request(url, { method: "POST", agent, ...(lookup ? { lookup } : {}) });
        req.on("response", () => resolve(new Error("the request got through")));
        req.on("error", resolve);
        req.end("{}");
      });

    // A name the connection itself resolves to loopback.
    const rebound = await attempt(
      `http://hooks.example.test:${receiver.port}/`,
      lookupTo("127.0.0.1"),
    );
    expect(rebound.message).toMatch(/127\.0\.0\.1.* is not allowed/);
    // localhost through the system resolver.
    const local = await attempt(`http://localhost:${receiver.port}/`);
    expect(local.message).toMatch(/is not allowed/);
    // An address literal, with no lookup at all.
    const literal = await attempt(`http://127.0.0.1:${receiver.port}/`);
    expect(literal.message).toMatch(/is not allowed/);
    expect(receiver.received).toHaveLength(0);
  });
});

describe("safePost", () => {
  it("reports a redirect without following it", async () => {
    const target = await Receiver.start();
    const redirector = (await Receiver.start()).reply({
      status: 301,
      headers: { location: `${target.url}/next` },
    });
    await expect(
      safePost(redirector.url, "{}", {}, { timeoutMs: 5000, allowPrivate: true }),
    ).resolves.toEqual({ status: 301, location: `${target.url}/next` });
    expect(redirector.received).toHaveLength(1);
    expect(target.received).toHaveLength(0);
  });

  it("gives up on a receiver that does not answer within the deadline", async () => {
    const receiver = (await Receiver.start()).reply({ status: 200, hang: true });
    await expect(
      safePost(receiver.url, "{}", {}, { timeoutMs: 200, allowPrivate: true }),
    ).rejects.toThrow(new CallbackDeliveryError("no answer within 200 ms"));
  });

  it("keeps cloud metadata refused even when private addresses are allowed", async () => {
    await expect(
      safePost(
        "http://169.254.169.254/latest/meta-data/",
        "{}",
        {},
        {
          timeoutMs: 5000,
          allowPrivate: true,
        },
      ),
    ).rejects.toBeInstanceOf(CallbackRefusedError);
    await expect(
      validateCallbackUrl("http://metadata.google.internal/", { allowPrivate: true }),
    ).rejects.toBeInstanceOf(CallbackRefusedError);
  });

  it("refuses URLs that are not plain http(s)", async () => {
    for (const url of ["ftp://example.com/", "http://user:pw@example.com/", "not a url"]) {
      await expect(validateCallbackUrl(url)).rejects.toBeInstanceOf(CallbackRefusedError);
      await expect(safePost(url, "{}", {}, { timeoutMs: 1000 })).rejects.toBeInstanceOf(
        CallbackRefusedError,
      );
    }
  });
});
