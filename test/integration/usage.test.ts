import { parse } from "csv-parse/sync";
import { Client } from "pg";
import type { Viewer } from "../../src/auth/viewer";
import {
  UsageRepository,
  type UsageDimension,
  type UsageGroup,
} from "../../src/cost/usage.repository";
import { USAGE_SHARDS } from "../../migrations/1764360000000-usage-shards";
import { errorCode, gql } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const WEIRD_USER = 'we,ird "id"';
const USERS = ["alice", "bob", WEIRD_USER];
const DIMENSIONS: UsageDimension[] = ["DAY", "MODEL", "PROVIDER", "USER"];
const ALL_GROUPINGS: UsageDimension[][] = Array.from({ length: 16 }, (_, mask) =>
  DIMENSIONS.filter((_d, i) => mask & (1 << i)),
);

/** Ranges aligned to UTC days, with partial days at either edge, inside one day, and empty. */
const RANGES: Array<[string, string]> = [
  ["2026-10-02T00:00:00.000Z", "2026-10-08T00:00:00.000Z"],
  ["2026-10-02T05:17:00.000Z", "2026-10-08T13:45:30.500Z"],
  ["2026-10-03T01:00:00.000Z", "2026-10-03T20:00:00.000Z"],
  ["2026-10-02T12:00:00.000Z", "2026-10-03T06:00:00.000Z"],
  ["2026-10-03T00:00:00.000Z", "2026-10-04T00:00:00.001Z"],
  ["2026-09-30T00:00:00.000Z", "2026-11-01T00:00:00.000Z"],
  ["2027-01-01T00:00:00.000Z", "2027-01-02T00:00:00.000Z"],
];

/** Column expressions of the reference query, written independently of the repository. */
const REFERENCE: Record<UsageDimension, Array<[string, string]>> = {
  DAY: [["day", `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')`]],
  MODEL: [["model", "model"]],
  PROVIDER: [["provider", "provider"]],
  USER: [
    ["accountId", "account_id::text"],
    ["userId", "user_id"],
  ],
};

/**
 * Seeds `n` usage rows (and their generations) for one account in one INSERT ... SELECT per
 * table, spread from `start` every 37 min 13 s over users, models, providers and every cache
 * kind. Row i of a batch is numbered from `offset`, so batches differ in their mix.
 */
const SEED = `
  WITH eu AS (
    SELECT id, user_id, (row_number() OVER (ORDER BY user_id) - 1)::int AS k
      FROM end_users WHERE account_id = $1),
  g AS (
    INSERT INTO generations (account_id, end_user_id, user_id, status, media_type, prompt, model,
                             seed, priority, estimated_cost_usd, request_hash)
    SELECT $1, eu.id, eu.user_id, 'SUCCEEDED', (ARRAY['IMAGE','VIDEO','AUDIO'])[1 + (i / 3) % 3],
           'seed', (ARRAY['sim-image-fast','sim-video','sim-audio'])[1 + (i / 3) % 3], i,
           'STANDARD', 0, 'seed-' || i
      FROM generate_series($3::int, $3::int + $4::int - 1) i JOIN eu ON eu.k = i % 3
    RETURNING id, account_id, end_user_id, user_id, model, media_type,
              substring(request_hash FROM 6)::int AS i)
  INSERT INTO usage_records (account_id, end_user_id, user_id, generation_id, model, provider,
                             media_type, cost_usd, cached, cache_hit_kind, saved_usd, duration_ms,
                             created_at)
  SELECT account_id, end_user_id, user_id, id, model,
         CASE WHEN i % 6 = 5 THEN NULL ELSE (ARRAY['replicate','fal'])[1 + i % 2] END,
         media_type,
         CASE WHEN i % 7 < 3 THEN 0 ELSE ((i * 7919) % 100000) / 1000000.0 + 0.01 END,
         i % 7 < 3,
         (ARRAY['EXACT','SEMANTIC','INFLIGHT'])[1 + i % 7],
         CASE WHEN i % 7 < 3 THEN 0.0123 + (i % 13) / 1000.0 ELSE 0 END,
         CASE WHEN i % 7 < 3 THEN 0 WHEN i % 11 = 4 THEN NULL ELSE 1000 + (i * 37) % 5000 END,
         $2::timestamptz + (i - $3::int) * interval '37 minutes 13 seconds'
    FROM g`;

/** Generation and usage row for one end user at an exact instant (the single-row insert path). */
const SEED_ONE = `
  WITH g AS (
    INSERT INTO generations (account_id, end_user_id, user_id, status, media_type, prompt, model,
                             seed, priority, estimated_cost_usd, request_hash)
    SELECT $1, id, user_id, 'SUCCEEDED', 'IMAGE', 'edge', 'sim-image-fast', 1, 'STANDARD', 0, 'edge'
      FROM end_users WHERE account_id = $1 AND user_id = $2
    RETURNING id, end_user_id)
  INSERT INTO usage_records (account_id, end_user_id, user_id, generation_id, model, provider,
                             media_type, cost_usd, cached, saved_usd, duration_ms, created_at)
  SELECT $1, end_user_id, $2, id, 'sim-image-fast', 'replicate', 'IMAGE', $3, false, 0, 1500, $4
    FROM g`;

/** Rows of a rollup recomputed from usage_records minus the rollup, both ways: must be 0. */
function rollupDrift(table: string, key: string[]): string {
  const exprs = key.map((k) => (k === "day" ? `(created_at AT TIME ZONE 'UTC')::date` : k));
  const sums = `generations, cost_usd, cache_hits, saved_usd, exact_hits, semantic_hits,
    inflight_hits, paid_duration_ms, paid_timed`;
  return `
  WITH fresh AS (
    SELECT ${exprs.join(", ")}, count(*) AS generations, sum(cost_usd) AS cost_usd,
           count(*) FILTER (WHERE cached) AS cache_hits, sum(saved_usd) AS saved_usd,
           count(*) FILTER (WHERE cache_hit_kind = 'EXACT') AS exact_hits,
           count(*) FILTER (WHERE cache_hit_kind = 'SEMANTIC') AS semantic_hits,
           count(*) FILTER (WHERE cache_hit_kind = 'INFLIGHT') AS inflight_hits,
           COALESCE(sum(duration_ms) FILTER (WHERE NOT cached), 0) AS paid_duration_ms,
           count(duration_ms) FILTER (WHERE NOT cached) AS paid_timed
      FROM usage_records GROUP BY ${exprs.join(", ")}),
  kept AS (
    SELECT ${key.join(", ")}, ${sums
      .split(",")
      .map((c) => `sum(${c.trim()}) AS ${c.trim()}`)
      .join(", ")}
      FROM ${table} GROUP BY ${key.join(", ")} HAVING sum(generations) <> 0)
  SELECT count(*)
    FROM ((TABLE fresh EXCEPT TABLE kept) UNION ALL (TABLE kept EXCEPT TABLE fresh)) d`;
}

const ROLLUP_DRIFT = `SELECT ((${rollupDrift("usage_daily", [
  "account_id",
  "day",
  "model",
  "provider",
  "media_type",
])}) + (${rollupDrift("usage_daily_users", [
  "account_id",
  "day",
  "user_id",
  "model",
  "provider",
  "media_type",
])}))::int AS n`;

describe("usage", () => {
  let env: TestEnv;
  let server: TestServer;
  let admin: string;
  let acme: { accountId: string; key: string };
  let globex: { accountId: string; key: string };
  let adminViewer: Viewer;
  let acmeViewer: Viewer;

  const sql = <T = Record<string, unknown>>(q: string, params: unknown[] = []) =>
    server.app.db.dataSource.query(q, params) as Promise<T[]>;

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, { worker: false });
    admin = await adminKey(server);
    acme = await partner(server, admin, "acme");
    globex = await partner(server, admin, "globex");
    adminViewer = (await server.app.services.auth.authenticate(`Bearer ${admin}`))!;
    acmeViewer = (await server.app.services.auth.authenticate(`Bearer ${acme.key}`))!;
    for (const account of [acme, globex]) {
      await sql(`INSERT INTO end_users (account_id, user_id) SELECT $1, unnest($2::text[])`, [
        account.accountId,
        USERS,
      ]);
    }
    // 400 rows over ~11 days for acme in one statement, 250 for globex in two.
    await sql(SEED, [acme.accountId, "2026-09-30T21:00:00Z", 0, 400]);
    await sql(SEED, [globex.accountId, "2026-10-01T03:00:00Z", 1000, 125]);
    await sql(SEED, [globex.accountId, "2026-09-20T03:00:00Z", 2000, 125]);
    // Rows on the edges of a UTC day, to the microsecond.
    await sql(SEED_ONE, [acme.accountId, "alice", "1.000001", "2026-10-03T00:00:00Z"]);
    await sql(SEED_ONE, [acme.accountId, "bob", "2.5", "2026-10-02T23:59:59.999999Z"]);
    await sql(SEED_ONE, [acme.accountId, WEIRD_USER, "0.333333", "2026-10-04T00:00:00Z"]);
  });

  afterAll(async () => {
    await server.stop();
    await env.cleanup();
  });

  /** What the report must say, from a plain GROUP BY over usage_records. */
  async function reference(
    from: string,
    to: string,
    groupBy: UsageDimension[],
    accountId?: string,
  ): Promise<Array<Record<string, unknown>>> {
    const cols = groupBy.flatMap((d) => REFERENCE[d]);
    const select = cols.map(([name, expr]) => `${expr} AS "${name}", `).join("");
    const group = cols.length ? `GROUP BY ${cols.map(([, e]) => e).join(", ")}` : "";
    const rows = await sql<Record<string, unknown>>(
      `SELECT ${select}
              count(*)::int AS generations, COALESCE(sum(cost_usd), 0)::numeric(20,6)::text AS cost,
              (count(*) FILTER (WHERE cached))::int AS "cacheHits",
              COALESCE(sum(saved_usd), 0)::numeric(20,6)::text AS saved,
              (count(*) FILTER (WHERE cache_hit_kind = 'EXACT'))::int AS exact,
              (count(*) FILTER (WHERE cache_hit_kind = 'SEMANTIC'))::int AS semantic,
              (count(*) FILTER (WHERE cache_hit_kind = 'INFLIGHT'))::int AS inflight,
              (avg(duration_ms) FILTER (WHERE NOT cached))::float8 AS avg
         FROM usage_records
        WHERE created_at >= $1 AND created_at < $2 ${accountId ? "AND account_id = $3" : ""}
        ${group}`,
      accountId ? [from, to, accountId] : [from, to],
    );
    return rows
      .filter((r) => cols.length > 0 || (r.generations as number) > 0)
      .map((r) => ({ ...r, avg: r.avg === null ? null : Number((r.avg as number).toFixed(6)) }))
      .sort(byKey);
  }

  async function report(viewer: Viewer, from: string, to: string, groupBy: UsageDimension[]) {
    const r = await server.app.services.usage.report(viewer, {
      from: new Date(from),
      to: new Date(to),
      groupBy,
    });
    const hits = (ks: Array<{ kind: string; hits: number }>, kind: string) =>
      ks.find((k) => k.kind === kind)?.hits ?? 0;
    const cols = groupBy.flatMap((d) => REFERENCE[d]).map(([name]) => name);
    const groups: Array<UsageGroup | typeof r> = groupBy.length
      ? r.rows
      : r.generations > 0
        ? [r]
        : [];
    const rows = groups
      .map((g) => ({
        ...Object.fromEntries(
          cols.map((c) => [c, (g as unknown as Record<string, unknown>)[c] ?? null]),
        ),
        generations: g.generations,
        cost: g.totalCostUsd,
        cacheHits: g.cacheHits,
        saved: g.savedUsd,
        exact: hits(g.cacheHitsByKind, "EXACT"),
        semantic: hits(g.cacheHitsByKind, "SEMANTIC"),
        inflight: hits(g.cacheHitsByKind, "INFLIGHT"),
        avg: g.avgDurationMs === null ? null : Number(g.avgDurationMs.toFixed(6)),
      }))
      .sort(byKey);
    return { report: r, rows };
  }

  it("keeps the rollup equal to a sum over usage_records, bulk and single inserts alike", async () => {
    const [drift] = await sql<{ n: number }>(ROLLUP_DRIFT);
    expect(drift!.n).toBe(0);
    const [counts] = await sql<{ raw: number; rolled: number; users: number; keys: number }>(
      `SELECT (SELECT count(*) FROM usage_records)::int AS raw,
              (SELECT sum(generations) FROM usage_daily)::int AS rolled,
              (SELECT sum(generations) FROM usage_daily_users)::int AS users,
              (SELECT count(*) FROM usage_daily)::int AS keys`,
    );
    expect(counts).toEqual({ raw: 653, rolled: 653, users: 653, keys: expect.any(Number) });
    expect(counts!.keys).toBeLessThan(counts!.raw / 2);
  });

  it("groups by every combination of dimensions, exactly, over any range (partner)", async () => {
    let compared = 0;
    for (const [from, to] of RANGES) {
      for (const groupBy of ALL_GROUPINGS) {
        const { rows } = await report(acmeViewer, from, to, groupBy);
        expect({ from, to, groupBy, rows }).toEqual({
          from,
          to,
          groupBy,
          rows: await reference(from, to, groupBy, acme.accountId),
        });
        compared++;
      }
    }
    expect(compared).toBe(RANGES.length * 16);
  });

  it("groups every way across all accounts for ADMIN", async () => {
    for (const [from, to] of RANGES.slice(0, 3)) {
      for (const groupBy of ALL_GROUPINGS) {
        const { rows } = await report(adminViewer, from, to, groupBy);
        expect(rows).toEqual(await reference(from, to, groupBy));
      }
    }
  });

  it("reports totals, hit rate and savings by kind over GraphQL", async () => {
    const [from, to] = RANGES[1]!;
    const res = await gql(
      server.url,
      `query($from: DateTime!, $to: DateTime!) {
        usage(from: $from, to: $to, groupBy: [DAY, MODEL]) {
          totalCostUsd generations cacheHits cacheHitRate savedUsd avgDurationMs
          cacheHitsByKind { kind hits savedUsd }
          rows { day model generations costUsd cacheHits savedUsd avgDurationMs
                 cacheHitsByKind { kind hits } }
        }
      }`,
      { from, to },
      acme.key,
    );
    expect(res.errors).toBeUndefined();
    const u = res.data!.usage;
    const [ref] = await reference(from, to, [], acme.accountId);
    expect(u.generations).toBe(ref!.generations);
    expect(u.totalCostUsd).toBeCloseTo(Number(ref!.cost), 6);
    expect(u.savedUsd).toBeCloseTo(Number(ref!.saved), 6);
    expect(u.cacheHits).toBe(ref!.cacheHits);
    expect(u.cacheHitRate).toBeCloseTo((ref!.cacheHits as number) / (ref!.generations as number));
    expect(u.avgDurationMs).toBeCloseTo(ref!.avg as number, 3);
    expect(u.cacheHitsByKind.map((k: { kind: string }) => k.kind)).toEqual([
      "EXACT",
      "INFLIGHT",
      "SEMANTIC",
    ]);
    const [savedByKind] = await sql<{ saved: string }>(
      `SELECT sum(saved_usd)::text AS saved FROM usage_records
        WHERE account_id = $1 AND created_at >= $2 AND created_at < $3 AND cache_hit_kind = 'SEMANTIC'`,
      [acme.accountId, from, to],
    );
    expect(
      u.cacheHitsByKind.find((k: { kind: string }) => k.kind === "SEMANTIC").savedUsd,
    ).toBeCloseTo(Number(savedByKind!.saved), 6);
    expect(u.rows.reduce((s: number, r: { generations: number }) => s + r.generations, 0)).toBe(
      u.generations,
    );
  });

  it("shows a partner its own account only, ADMIN all or the one named", async () => {
    const [from, to] = RANGES[5]!;
    const q = `query($from: DateTime!, $to: DateTime!, $a: ID) {
      usage(from: $from, to: $to, accountId: $a, groupBy: [USER]) { generations rows { accountId userId } } }`;
    const count = async (accountId?: string) =>
      (await reference(from, to, [], accountId))[0]?.generations;

    const mine = await gql(server.url, q, { from, to }, acme.key);
    expect(mine.data!.usage.generations).toBe(await count(acme.accountId));
    expect(new Set(mine.data!.usage.rows.map((r: { accountId: string }) => r.accountId))).toEqual(
      new Set([acme.accountId]),
    );
    const named = await gql(server.url, q, { from, to, a: acme.accountId }, acme.key);
    expect(named.data!.usage.generations).toBe(await count(acme.accountId));

    const all = await gql(server.url, q, { from, to }, admin);
    expect(all.data!.usage.generations).toBe(await count());
    expect(all.data!.usage.generations).toBeGreaterThan(mine.data!.usage.generations);
    const one = await gql(server.url, q, { from, to, a: globex.accountId }, admin);
    expect(one.data!.usage.generations).toBe(await count(globex.accountId));

    const other = await gql(server.url, q, { from, to, a: globex.accountId }, acme.key);
    expect(errorCode(other)).toBe("FORBIDDEN");
    const token = await clientToken(acme.key, "alice");
    expect(errorCode(await gql(server.url, q, { from, to }, token))).toBe("FORBIDDEN");
    expect(errorCode(await gql(server.url, q, { from, to }))).toBe("UNAUTHENTICATED");
  });

  async function clientToken(key: string, userId: string): Promise<string> {
    const res = await gql<{ createClientToken: { token: string } }>(
      server.url,
      `mutation($u: ID!) { createClientToken(userId: $u) { token } }`,
      { u: userId },
      key,
    );
    return res.data!.createClientToken.token;
  }

  describe("the rollup trigger", () => {
    const FROM = "2026-12-01T00:00:00Z";
    const TO = "2026-12-03T00:00:00Z";

    it("folds a bulk insert of thousands of rows into a few rollup rows", async () => {
      await sql(SEED, [globex.accountId, FROM, 10_000, 3000]);
      const [drift] = await sql<{ n: number }>(ROLLUP_DRIFT);
      expect(drift!.n).toBe(0);
      const { rows } = await report(adminViewer, FROM, "2026-12-31T00:00:00Z", ["DAY", "USER"]);
      expect(rows).toEqual(await reference(FROM, "2026-12-31T00:00:00Z", ["DAY", "USER"]));
    });

    it("lets concurrent bulk inserts on the same keys finish without deadlock or lost counts", async () => {
      const before = (await reference(FROM, TO, [], globex.accountId))[0]?.generations as number;
      const clients = await Promise.all(
        [0, 1, 2, 3].map(async () => {
          const c = new Client({ connectionString: env.databaseUrl });
          await c.connect();
          return c;
        }),
      );
      try {
        // Same account, users, models and days in every transaction; each holds its row locks
        // for a moment before committing, so they truly overlap.
        await Promise.all(
          clients.map(async (c, n) => {
            await c.query("BEGIN");
            await c.query(SEED, [globex.accountId, FROM, 20_000 + n * 1000, 60]);
            await c.query("SELECT pg_sleep(0.2)");
            await c.query(SEED, [globex.accountId, FROM, 20_500 + n * 1000, 60]);
            await c.query("COMMIT");
          }),
        );
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
      const after = (await reference(FROM, TO, [], globex.accountId))[0]?.generations as number;
      expect(after - before).toBe(4 * 120);
      const [drift] = await sql<{ n: number }>(ROLLUP_DRIFT);
      expect(drift!.n).toBe(0);
    });

    it("follows updates, deletes and cascades from deleted generations", async () => {
      await sql(
        `UPDATE usage_records SET cached = true, cache_hit_kind = 'EXACT', cost_usd = 0,
                saved_usd = 0.5, created_at = created_at + interval '1 day'
          WHERE account_id = $1 AND created_at >= $2 AND created_at < $3 AND NOT cached`,
        [globex.accountId, FROM, TO],
      );
      await sql(
        `DELETE FROM generations WHERE id IN (
           SELECT generation_id FROM usage_records WHERE account_id = $1 AND user_id = 'bob')`,
        [globex.accountId],
      );
      await sql(`DELETE FROM usage_records WHERE account_id = $1 AND model = 'sim-audio'`, [
        globex.accountId,
      ]);
      const [drift] = await sql<{ n: number }>(ROLLUP_DRIFT);
      expect(drift!.n).toBe(0);
      // The end-user rollup drops a key with its last generation; the sharded one keeps rows
      // that sum to zero until it is compacted, and reports leave them out.
      const [empty] = await sql<{ n: number }>(
        `SELECT count(*)::int AS n FROM usage_daily_users WHERE generations <= 0`,
      );
      expect(empty!.n).toBe(0);
      const { rows } = await report(adminViewer, FROM, "2026-12-31T00:00:00Z", ALL_GROUPINGS[15]!);
      expect(rows).toEqual(await reference(FROM, "2026-12-31T00:00:00Z", ALL_GROUPINGS[15]!));
    });
  });

  describe("the rollup's shards", () => {
    // A past day (compaction folds the days before today) with rows of its own.
    const DAY = "2026-08-10T00:00:00Z";
    const NEXT = "2026-08-11T00:00:00Z";

    /** `n` connections on distinct shards (backend pid modulo the shard count). */
    async function onDistinctShards(n: number): Promise<Client[]> {
      const kept = new Map<number, Client>();
      const spare: Client[] = [];
      try {
        while (kept.size < n) {
          const c = new Client({ connectionString: env.databaseUrl });
          await c.connect();
          const { rows } = await c.query<{ shard: number }>(
            `SELECT pg_backend_pid() % ${USAGE_SHARDS} AS shard`,
          );
          if (kept.has(rows[0]!.shard)) spare.push(c);
          else kept.set(rows[0]!.shard, c);
        }
      } finally {
        await Promise.all(spare.map((c) => c.end()));
      }
      return [...kept.values()];
    }

    it("lets transactions of different shards add to one key without waiting on each other", async () => {
      const [a, b] = await onDistinctShards(2);
      try {
        await a!.query("BEGIN");
        await b!.query("BEGIN");
        await a!.query(SEED_ONE, [acme.accountId, "alice", "0.25", "2026-08-10T10:00:00Z"]);
        // With one row per key this would wait for `a` to commit: refused after 1 s instead.
        await b!.query("SET LOCAL lock_timeout = '1s'");
        await b!.query(SEED_ONE, [acme.accountId, "bob", "0.5", "2026-08-10T11:00:00Z"]);
        await a!.query("COMMIT");
        await b!.query("COMMIT");
      } finally {
        await Promise.all([a!.end(), b!.end()]);
      }
      const rows = await sql<{ shards: number; generations: number }>(
        `SELECT count(*)::int AS shards, sum(generations)::int AS generations FROM usage_daily
          WHERE account_id = $1 AND day = '2026-08-10' AND model = 'sim-image-fast'`,
        [acme.accountId],
      );
      expect(rows).toEqual([{ shards: 2, generations: 2 }]);
      const [drift] = await sql<{ n: number }>(ROLLUP_DRIFT);
      expect(drift!.n).toBe(0);
    });

    it("compacts past days into one row per key and drops keys left with nothing", async () => {
      const clients = await onDistinctShards(3);
      try {
        await Promise.all(
          clients.map((c, n) =>
            c.query(SEED, [globex.accountId, "2026-08-10T01:00:00Z", 30_000 + n * 100, 30]),
          ),
        );
        // Every sim-audio generation of the day deleted from a shard of its own.
        await clients[0]!.query(
          `DELETE FROM usage_records WHERE account_id = $1 AND model = 'sim-audio'
              AND created_at >= $2 AND created_at < $3`,
          [globex.accountId, DAY, NEXT],
        );
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
      const shardRows = `SELECT count(*)::int AS n FROM usage_daily
        WHERE day < (now() AT TIME ZONE 'UTC')::date AND (shard <> 0 OR generations <= 0)`;
      expect((await sql<{ n: number }>(shardRows))[0]!.n).toBeGreaterThan(0);
      const before = await report(adminViewer, DAY, NEXT, ["MODEL", "PROVIDER"]);
      expect(before.rows).toEqual(await reference(DAY, NEXT, ["MODEL", "PROVIDER"]));
      expect(before.rows.some((r) => (r as Record<string, unknown>).model === "sim-audio")).toBe(
        false,
      );

      const repo = new UsageRepository(server.app.db.dataSource);
      expect(await repo.compactRollup()).toBeGreaterThan(0);
      expect((await sql<{ n: number }>(shardRows))[0]!.n).toBe(0);
      const [perKey] = await sql<{ n: number }>(
        `SELECT count(*)::int AS n FROM (
           SELECT 1 FROM usage_daily GROUP BY account_id, day, model, provider, media_type
           HAVING count(*) > 1 AND day < (now() AT TIME ZONE 'UTC')::date) k`,
      );
      expect(perKey!.n).toBe(0);
      const [drift] = await sql<{ n: number }>(ROLLUP_DRIFT);
      expect(drift!.n).toBe(0);
      expect((await report(adminViewer, DAY, NEXT, ["MODEL", "PROVIDER"])).rows).toEqual(
        before.rows,
      );
      // Nothing left to do: a second pass removes nothing.
      expect(await repo.compactRollup()).toBe(0);
    });
  });

  describe("CSV export", () => {
    const csvUrl = (params: Record<string, string>) =>
      `${server.url}/usage.csv?${new URLSearchParams(params).toString()}`;
    const get = (params: Record<string, string>, credential?: string) =>
      fetch(csvUrl(params), {
        headers: credential ? { authorization: `Bearer ${credential}` } : {},
      });

    it("exports the report as quoted CSV with exact money", async () => {
      const [from, to] = RANGES[1]!;
      const res = await get({ from, to, groupBy: "DAY,USER" }, acme.key);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/csv; charset=utf-8/);
      expect(res.headers.get("content-disposition")).toBe(
        'attachment; filename="usage-2026-10-02-2026-10-08.csv"',
      );
      const text = await res.text();
      // RFC 4180: a field with a comma or a quote is quoted, its quotes doubled.
      expect(text).toContain(`,"we,ird ""id""",`);
      const records = parse(text, { columns: true }) as Array<Record<string, string>>;
      expect(Object.keys(records[0]!)).toEqual([
        "day",
        "account_id",
        "user_id",
        "generations",
        "cost_usd",
        "cache_hits",
        "exact_hits",
        "semantic_hits",
        "inflight_hits",
        "saved_usd",
        "avg_duration_ms",
      ]);
      const ref = await reference(from, to, ["DAY", "USER"], acme.accountId);
      expect(
        records
          .map((r) => ({
            day: r.day,
            accountId: r.account_id,
            userId: r.user_id,
            generations: Number(r.generations),
            cost: r.cost_usd,
            cacheHits: Number(r.cache_hits),
            saved: r.saved_usd,
            exact: Number(r.exact_hits),
            semantic: Number(r.semantic_hits),
            inflight: Number(r.inflight_hits),
          }))
          .sort(byKey),
      ).toEqual(ref.map(({ avg: _avg, ...r }) => r));
      expect(records.map((r) => r.user_id)).toContain(WEIRD_USER);
    });

    it("exports one line of totals without groupBy, and accepts plain dates", async () => {
      const res = await get({ from: "2026-10-02", to: "2026-10-08" }, admin);
      expect(res.status).toBe(200);
      const records = parse(await res.text(), { columns: true }) as Array<Record<string, string>>;
      expect(records).toHaveLength(1);
      const [ref] = await reference("2026-10-02T00:00:00Z", "2026-10-08T00:00:00Z", []);
      expect(records[0]!.generations).toBe(String(ref!.generations));
      expect(records[0]!.cost_usd).toBe(ref!.cost);
    });

    it("answers 401 without a valid key and 403 for another account or a client token", async () => {
      const q = { from: "2026-10-02", to: "2026-10-08" };
      const none = await get(q);
      expect(none.status).toBe(401);
      expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect((await get(q, "gg_not-a-key")).status).toBe(401);
      const other = await get({ ...q, accountId: globex.accountId }, acme.key);
      expect(other.status).toBe(403);
      expect(((await other.json()) as { code: string }).code).toBe("FORBIDDEN");
      expect((await get(q, await clientToken(acme.key, "alice"))).status).toBe(403);
    });

    it("answers 400 with the parameter at fault on bad input", async () => {
      const cases: Array<[Record<string, string>, string]> = [
        [{ to: "2026-10-08" }, "from: is required"],
        [{ from: "yesterday", to: "2026-10-08" }, "from: must be an ISO 8601"],
        [{ from: "2026-10-02T10:00", to: "2026-10-08" }, "from: must be an ISO 8601"],
        [{ from: "2026-10-08", to: "2026-10-02" }, "to: must be after from"],
        [{ from: "2026-10-02", to: "2026-10-08", groupBy: "DAY,WEEK" }, "groupBy[1]: must be"],
        [{ from: "2026-10-02", to: "2026-10-08", groupBy: "DAY,day" }, "groupBy[1]: repeats"],
        [{ from: "2026-10-02", to: "2026-10-08", accountId: "acme" }, "accountId: must be a UUID"],
        [{ from: "2025-01-01", to: "2026-10-08" }, "to: the range may span at most"],
      ];
      for (const [params, message] of cases) {
        const res = await get(params, admin);
        expect({ params, status: res.status }).toEqual({ params, status: 400 });
        const body = (await res.json()) as { error: string; code: string };
        expect(body.code).toBe("BAD_USER_INPUT");
        expect(body.error).toContain(message);
      }
    });
  });
});

function byKey(a: Record<string, unknown>, b: Record<string, unknown>): number {
  const key = (r: Record<string, unknown>) =>
    JSON.stringify([r.day, r.model, r.provider, r.accountId, r.userId]);
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}
