/**
 * Usage reports at 10 million usage rows: the daily rollups against a plain sum over
 * usage_records, the trigger's cost per write, and the plans.
 *
 *   npm run bench -- --only=usage          # BENCH_USAGE_ROWS=1000000 for a quick run
 *
 * Not part of the full run: loading 10 million rows takes minutes.
 *
 * The data: a year of usage (2025-12-01 to 2026-12-01) over 100 accounts whose sizes follow
 * 1/rank (the largest has ~19% of all rows), 1,000 end users each (a few heavy ones do most
 * of the work), 8 models (a user mostly sticks to one), 3 providers, ~30% cache hits of the
 * three kinds. It is loaded in time order, 500k rows per INSERT ... SELECT, with the rollup
 * trigger on. The bench database has no generations rows and its usage_records carry no
 * foreign keys: referential checks are not what is measured, and 10 million generations rows
 * would triple the load time.
 */
import "reflect-metadata";
import { buildUsageQuery, UsageRepository, type UsageQuery } from "../src/cost/usage.repository";
import { openDatabase } from "../src/infra/data-source";
import { migrate } from "../src/infra/migrate";
import { withInfra } from "./lib/infra";
import type { Scenario } from "./lib/scenario";

export interface UsageBenchOptions {
  databaseUrl: string;
  /** @defaultValue 10_000_000 */
  rows?: number;
  /** Timed runs per query, after one warm-up. @defaultValue 7 */
  runs?: number;
}

const ACCOUNTS = 100;
const USERS = 1000;
const MODELS = [
  "sim-image-fast",
  "sim-image-standard",
  "flux-schnell",
  "flux-dev",
  "sdxl",
  "sim-video",
  "kling-video",
  "sim-audio",
];
const MEDIA = ["IMAGE", "IMAGE", "IMAGE", "IMAGE", "IMAGE", "VIDEO", "VIDEO", "AUDIO"];
const START = "2025-12-01T00:00:00Z";
const CHUNK = 500_000;

/** Deterministic ids, so rows can name accounts and end users without a join. */
const accountId = (a: string) => `md5('account-' || ${a})::uuid`;
const endUserId = (a: string, u: string) => `md5('user-' || ${a} || '-' || ${u})::uuid`;

export const usageScenario: Scenario = (ctx) =>
  withInfra(ctx, async (infra) => {
    const rows = Number(process.env.BENCH_USAGE_ROWS ?? 10_000_000);
    const lines = await measureUsage({
      databaseUrl: infra.databaseUrl,
      rows,
      runs: Number(process.env.BENCH_USAGE_RUNS ?? 7),
      log: ctx.log,
    });
    const headline = lines.find((l) => l.includes("DAY+MODEL")) ?? lines[0] ?? "";
    return {
      title: `Usage reports at ${rows.toLocaleString("en-US")} usage rows`,
      setup:
        "`bench/usage.ts`: a year of usage over 100 accounts, loaded in time order with the rollup trigger on; times are `UsageRepository.report`, median of the timed runs after one warm-up. The lines below are the scenario's own output; `results/2026-11-28-usage.md` explains them.",
      rows: lines.map((line) => ({ measure: "", result: line.trim() })),
      headline,
      goal: "one account's month by DAY and MODEL < 200 ms",
    };
  });

async function measureUsage(
  opts: UsageBenchOptions & { log(line: string): void },
): Promise<string[]> {
  const total = opts.rows ?? 10_000_000;
  const runs = opts.runs ?? 7;
  const lines: string[] = [];
  const log = (line: string) => {
    lines.push(line);
    opts.log(line);
  };
  const db = await openDatabase({ url: opts.databaseUrl, dataDir: "", poolSize: 2 });
  try {
    await migrate(db.dataSource);
    const q = (text: string, params: unknown[] = []) =>
      db.dataSource.query(text, params) as Promise<Array<Record<string, unknown>>>;

    // Parents, then the foreign keys off (see the header).
    await q(
      `INSERT INTO accounts (id, name) SELECT ${accountId("a")}, 'bench ' || a
         FROM generate_series(0, ${ACCOUNTS - 1}) a`,
    );
    await q(
      `INSERT INTO end_users (id, account_id, user_id)
       SELECT ${endUserId("a", "u")}, ${accountId("a")}, 'user-' || u
         FROM generate_series(0, ${ACCOUNTS - 1}) a, generate_series(0, ${USERS - 1}) u`,
    );
    for (const { conname } of await q(
      `SELECT conname FROM pg_constraint
        WHERE conrelid = 'usage_records'::regclass AND contype = 'f'`,
    )) {
      await q(`ALTER TABLE usage_records DROP CONSTRAINT "${String(conname)}"`);
    }

    const loadStarted = performance.now();
    const spanSeconds = 365 * 86400;
    // One connection for the load, with room for the trigger to group 500k rows in memory.
    const loader = db.dataSource.createQueryRunner();
    await loader.connect();
    await loader.query(`SET work_mem = '256MB'`);
    for (let first = 0; first < total; first += CHUNK) {
      const last = Math.min(total, first + CHUNK) - 1;
      // a: 101^r - 1 gives account a a share of about 1/(a+1). u: r^3 makes a few users heavy.
      // Sequential uuids keep the two uuid indexes append-only, as time-ordered ids would.
      await loader.query(
        `INSERT INTO usage_records (id, account_id, end_user_id, user_id, generation_id, model,
                provider, media_type, cost_usd, cached, cache_hit_kind, saved_usd, duration_ms,
                created_at)
         SELECT ('f' || lpad(to_hex(i), 31, '0'))::uuid, ${accountId("a")}, ${endUserId("a", "u")},
                'user-' || u, lpad(to_hex(i), 32, '0')::uuid, ($3::text[])[1 + m],
                CASE WHEN k = 'EXACT' OR k = 'SEMANTIC' THEN NULL
                     ELSE (ARRAY['replicate', 'fal', 'wavespeed'])[1 + (m + (i % 10 = 0)::int) % 3] END,
                ($4::text[])[1 + m],
                CASE WHEN k IS NULL THEN round((0.002 + random() * 0.08)::numeric, 6) ELSE 0 END,
                k IS NOT NULL, k,
                CASE WHEN k IS NULL THEN 0 ELSE round((0.002 + random() * 0.08)::numeric, 6) END,
                CASE WHEN k IS NULL THEN 800 + (random() * 20000)::int ELSE 0 END,
                $5::timestamptz + (i * ${spanSeconds}::float8 / $6) * interval '1 second'
           FROM (SELECT i, a, u,
                        -- a user mostly sticks to one model
                        CASE WHEN random() < 0.85 THEN (a * 7 + u) % 8 ELSE floor(random() * 8)::int END AS m,
                        CASE WHEN r < 0.18 THEN 'EXACT' WHEN r < 0.26 THEN 'SEMANTIC'
                             WHEN r < 0.30 THEN 'INFLIGHT' END AS k
                   FROM (SELECT i, least(${ACCOUNTS - 1}, floor(power(${ACCOUNTS + 1}, random()))::int - 1) AS a,
                                least(${USERS - 1}, floor(power(random(), 3) * ${USERS})::int) AS u,
                                random() AS r
                           FROM generate_series($1::bigint, $2::bigint) i) s) t`,
        [first, last, MODELS, MEDIA, START, total],
      );
      process.stdout.write(`\rusage: loaded ${last + 1} rows`);
    }
    process.stdout.write("\n");
    await loader.release();
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    await q(`VACUUM ANALYZE usage_records`);
    await q(`VACUUM ANALYZE usage_daily`);
    await q(`VACUUM ANALYZE usage_daily_users`);
    const [sizes] = await q(
      `SELECT (SELECT count(*) FROM usage_records)::bigint AS raw,
              (SELECT count(*) FROM usage_daily)::bigint AS rolled,
              (SELECT count(*) FROM usage_daily_users)::bigint AS users,
              pg_size_pretty(pg_total_relation_size('usage_records')) AS raw_size,
              pg_size_pretty(pg_total_relation_size('usage_daily')) AS rolled_size,
              pg_size_pretty(pg_total_relation_size('usage_daily_users')) AS users_size`,
    );
    log(
      `loaded ${String(sizes!.raw)} usage rows (${String(sizes!.raw_size)}) in ${round(loadSeconds)} s, trigger on, ${CHUNK} rows per statement`,
    );
    log(
      `rollups: usage_daily ${String(sizes!.rolled)} rows (${String(sizes!.rolled_size)}), usage_daily_users ${String(sizes!.users)} rows (${String(sizes!.users_size)})`,
    );

    const [big] = await q(
      `SELECT account_id, count(*)::int AS n FROM usage_daily GROUP BY 1 ORDER BY sum(generations) DESC LIMIT 1`,
    );
    const [median] = await q(
      `SELECT account_id FROM (SELECT account_id, sum(generations) AS g FROM usage_daily GROUP BY 1) s
        ORDER BY g LIMIT 1 OFFSET ${ACCOUNTS / 2}`,
    );
    const bigAccount = String(big!.account_id);
    const [bigMonth] = await q(
      `SELECT count(*)::int AS n FROM usage_records
        WHERE account_id = $1 AND created_at >= '2026-11-01' AND created_at < '2026-12-01'`,
      [bigAccount],
    );
    log(`largest account: ${bigMonth!.n as number} usage rows in 2026-11`);

    const repo = new UsageRepository(db.dataSource);
    const month = { from: new Date("2026-11-01T00:00:00Z"), to: new Date("2026-12-01T00:00:00Z") };
    const ragged = {
      from: new Date("2026-10-31T13:20:00Z"),
      to: new Date("2026-11-30T09:45:00Z"),
    };
    const cases: Array<[string, UsageQuery]> = [
      [
        "largest account, 2026-11, DAY+MODEL",
        { ...month, accountId: bigAccount, groupBy: ["DAY", "MODEL"] },
      ],
      [
        "largest account, 31 Oct 13:20 - 30 Nov 09:45, DAY+MODEL",
        { ...ragged, accountId: bigAccount, groupBy: ["DAY", "MODEL"] },
      ],
      ["largest account, 2026-11, totals only", { ...month, accountId: bigAccount, groupBy: [] }],
      ["largest account, 2026-11, USER", { ...month, accountId: bigAccount, groupBy: ["USER"] }],
      [
        "largest account, 2026-11, DAY+MODEL+PROVIDER+USER",
        { ...month, accountId: bigAccount, groupBy: ["DAY", "MODEL", "PROVIDER", "USER"] },
      ],
      [
        "largest account, whole year, MODEL+PROVIDER",
        {
          from: new Date(START),
          to: new Date("2026-12-01T00:00:00Z"),
          accountId: bigAccount,
          groupBy: ["MODEL", "PROVIDER"],
        },
      ],
      [
        "median account, 2026-11, DAY+MODEL",
        { ...month, accountId: String(median!.account_id), groupBy: ["DAY", "MODEL"] },
      ],
      ["ADMIN, all accounts, 2026-11, DAY", { ...month, groupBy: ["DAY"] }],
    ];
    for (const [name, query] of cases) {
      const t = await time(runs, () => repo.report(query));
      const rows = (await repo.report(query)).rows.length;
      log(
        `${name}: median ${t.median} ms (min ${t.min}, max ${t.max}, ${runs} runs), ${rows} rows`,
      );
    }

    // The same month read the way reports were computed before the rollup.
    const plain = await time(Math.min(runs, 5), () =>
      q(
        `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, model,
                sum(cost_usd), count(*), count(*) FILTER (WHERE cached), sum(saved_usd),
                avg(duration_ms) FILTER (WHERE NOT cached)
           FROM usage_records WHERE account_id = $1 AND created_at >= $2 AND created_at < $3
          GROUP BY 1, 2`,
        [bigAccount, month.from, month.to],
      ),
    );
    log(
      `for comparison, a plain GROUP BY over usage_records for the largest account's month, DAY+MODEL: median ${plain.median} ms`,
    );

    for (const [name, query] of [cases[0]!, cases[1]!, cases[3]!, cases[7]!]) {
      const { text, params } = buildUsageQuery(query);
      const plan = (await q(`EXPLAIN (ANALYZE, BUFFERS) ${text}`, params)).map((r) =>
        String(r["QUERY PLAN"]),
      );
      log(`EXPLAIN ANALYZE, ${name}:`);
      for (const line of summarize(plan)) log(`    ${line}`);
    }

    // What the trigger adds to one usage write (autocommit, like a finished generation).
    const single = async () => {
      const samples: number[] = [];
      for (let n = 0; n < 500; n++) {
        const t = performance.now();
        await q(
          `INSERT INTO usage_records (account_id, end_user_id, user_id, generation_id, model,
                  provider, media_type, cost_usd, duration_ms, created_at)
           VALUES (${accountId("7")}, ${endUserId("7", "3")}, 'user-3', gen_random_uuid(),
                   'sdxl', 'fal', 'IMAGE', 0.0123, 2100, now())`,
        );
        samples.push(performance.now() - t);
      }
      return stats(samples);
    };
    const withTrigger = await single();
    await q(`ALTER TABLE usage_records DISABLE TRIGGER usage_daily_on_insert`);
    const withoutTrigger = await single();
    await q(`ALTER TABLE usage_records ENABLE TRIGGER usage_daily_on_insert`);
    log(
      `one usage row per statement (500 each): median ${withTrigger.median} ms with the trigger, ${withoutTrigger.median} ms without (p95 ${withTrigger.p95} / ${withoutTrigger.p95} ms)`,
    );
  } finally {
    await db.close();
  }
  return lines;
}

async function time(
  runs: number,
  fn: () => Promise<unknown>,
): Promise<{ median: number; min: number; max: number }> {
  await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  const s = stats(samples);
  return { median: s.median, min: round(Math.min(...samples)), max: round(Math.max(...samples)) };
}

function stats(samples: number[]): { median: number; p95: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { median: round(at(0.5)), p95: round(at(0.95)) };
}

const round = (v: number) => Math.round(v * 10) / 10;

/** The plan's nodes with their row counts and times, without the per-column detail. */
function summarize(plan: string[]): string[] {
  return plan.filter(
    (l, i) => i === 0 || /->|Index Cond|Rows Removed|Planning Time|Execution Time/.test(l),
  );
}
