import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { deferred } from "../../../src/common/deferred";
import { freePort } from "../../helpers/ports";
import { query } from "../../helpers/postgres";

/**
 * A Postgres cluster of the fault suite's own, so that it can restart and crash it without
 * touching the machine's shared instance (its Redis server is test/helpers/redis-server.ts).
 * It runs as a direct child of the test process (in the foreground, never daemonized), so it
 * is tracked like the gengate children: stopped in `afterAll`, SIGKILLed by an `exit` hook if
 * the runner goes away.
 */

const PG_BIN = process.env.FAULTS_PG_BIN ?? findPgBin();

function findPgBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = fs.existsSync(root)
    ? fs
        .readdirSync(root)
        .filter((v) => fs.existsSync(path.join(root, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  return versions.length ? path.join(root, versions[0]!, "bin") : "";
}

const live = new Set<ChildProcess>();

process.on("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});

/** The user Postgres runs as: postgres refuses root, so as root we drop to `postgres`. */
function pgUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const res = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (res.status !== 0 || gid.status !== 0) {
    throw new Error("running as root, and there is no `postgres` user to run Postgres as");
  }
  return { uid: Number(res.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

function chownR(dir: string, uid: number, gid: number): void {
  fs.chownSync(dir, uid, gid);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) chownR(p, uid, gid);
    else fs.chownSync(p, uid, gid);
  }
}

interface Server {
  proc: ChildProcess;
  exited: Promise<void>;
  output: () => string;
}

/** Spawns a server and resolves once a line of its output matches `ready`. */
function startServer(
  cmd: string,
  args: string[],
  ready: RegExp,
  opts: { uid?: number; gid?: number; cwd?: string; timeoutMs?: number; what: string },
): Promise<Server> {
  const proc = spawn(cmd, args, {
    cwd: opts.cwd,
    uid: opts.uid,
    gid: opts.gid,
    stdio: ["ignore", "pipe", "pipe"],
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8" },
  });
  live.add(proc);
  let out = "";
  const isReady = deferred<void>();
  const gone = deferred<void>();
  const onData = (chunk: Buffer) => {
    out += chunk.toString("utf8");
    if (ready.test(out)) isReady.resolve();
  };
  proc.stdout!.on("data", onData);
  proc.stderr!.on("data", onData);
  proc.on("error", (err) => isReady.reject(err));
  proc.on("close", (code, signal) => {
    live.delete(proc);
    isReady.reject(
      new Error(
        `${opts.what} exited (code ${code}, signal ${signal}) before it was ready:\n${out}`,
      ),
    );
    gone.resolve();
  });
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const timer = setTimeout(
    () => isReady.reject(new Error(`${opts.what} not ready within ${timeoutMs} ms:\n${out}`)),
    timeoutMs,
  );
  return isReady.promise
    .then(() => ({ proc, exited: gone.promise, output: () => out }))
    .catch(async (err: unknown) => {
      if (live.has(proc)) {
        proc.kill("SIGKILL");
        await gone.promise;
      }
      throw err;
    })
    .finally(() => clearTimeout(timer));
}

async function stopServer(server: Server | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!server || !live.has(server.proc)) return;
  server.proc.kill(signal);
  const timer = setTimeout(() => server.proc.kill("SIGKILL"), 15_000);
  await server.exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------

export interface PrivatePostgres {
  port: number;
  /** `postgres://postgres@127.0.0.1:<port>/<db>` */
  url(db?: string): string;
  /**
   * Stops the cluster and starts it again on the same port and data. `fast` disconnects every
   * client and shuts down cleanly; `immediate` is a crash (recovery from the WAL at start).
   * `whileDown` runs between the two (the outage lasts until it resolves).
   */
  restart(mode?: "fast" | "immediate", whileDown?: () => Promise<unknown>): Promise<void>;
  /** Stops it (until `start()`): for outages longer than a restart. */
  stop(mode?: "fast" | "immediate"): Promise<void>;
  start(): Promise<void>;
  /** One query as the superuser, on `db` (default `postgres`). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[], db?: string): Promise<T[]>;
  /** Stops the cluster and deletes its files. */
  destroy(): Promise<void>;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  if (!PG_BIN) {
    throw new Error(
      "no Postgres server binaries (initdb, postgres) under /usr/lib/postgresql/<version>/bin; " +
        "set FAULTS_PG_BIN to their folder",
    );
  }
  const user = pgUser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-faults-pg-"));
  const data = path.join(dir, "data");
  const sockets = path.join(dir, "run");
  fs.mkdirSync(data, { mode: 0o700 });
  fs.mkdirSync(sockets);
  if (user.uid !== undefined) chownR(dir, user.uid, user.gid!);
  const init = spawnSync(
    path.join(PG_BIN, "initdb"),
    ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
    { uid: user.uid, gid: user.gid, encoding: "utf8", cwd: dir },
  );
  if (init.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}):\n${init.stdout}\n${init.stderr}`);
  }
  const port = await freePort();
  const args = [
    "-D",
    data,
    "-p",
    String(port),
    "-k",
    sockets,
    "-c",
    "listen_addresses=127.0.0.1",
    // A scratch cluster: durability against an OS crash is not under test (no fsync), a
    // process crash is. Commits stay synchronous: each is in the WAL (the OS's cache) before
    // it is acknowledged, so an `immediate` stop loses nothing an api answered for.
    "-c",
    "fsync=off",
    "-c",
    "full_page_writes=off",
    "-c",
    "shared_buffers=32MB",
    "-c",
    "max_connections=200",
    "-c",
    "log_min_messages=warning",
  ];
  let server: Server | undefined;
  const start = async () => {
    server = await startServer(
      path.join(PG_BIN, "postgres"),
      args,
      /database system is ready to accept connections/,
      { ...user, cwd: dir, what: "private postgres" },
    );
  };
  const stop = async (mode: "fast" | "immediate" = "fast") => {
    // SIGINT is a fast shutdown, SIGQUIT an immediate one (see the postgres manual).
    await stopServer(server, mode === "fast" ? "SIGINT" : "SIGQUIT");
    server = undefined;
  };
  try {
    await start();
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const url = (db = "postgres") => `postgres://postgres@127.0.0.1:${port}/${db}`;
  return {
    port,
    url,
    start,
    stop,
    restart: async (mode = "fast", whileDown) => {
      await stop(mode);
      try {
        await whileDown?.();
      } finally {
        await start();
      }
    },
    query: <T>(sql: string, params: unknown[] = [], db = "postgres") =>
      query<T>(url(db), sql, params),
    destroy: async () => {
      await stop("immediate");
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether any server this module started is still running (for the suite's own check). */
export function livePrivateServers(): number {
  return live.size;
}
