import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { constants as osConstants } from "node:os";
import { deferred, type Deferred } from "../../src/common/deferred";

/**
 * Real `gengate` child processes (the BUILT program, `dist/src/main.js`) for end-to-end tests.
 *
 * Every child is tracked from the moment it is spawned until it exits. `stopAllGengates()` is
 * registered as a root `afterAll` of every test file that imports this module, and a
 * synchronous `exit` hook SIGKILLs whatever is still alive if the test runner goes away, so a
 * failing or timed-out test never leaves a process running.
 *
 * Set E2E_ECHO=1 to copy every child's stdout and stderr to the test output, prefixed with its
 * role and pid.
 */

export type GengateRole = "api" | "worker" | "all" | "sim-provider";

export const REPO_ROOT = path.resolve(__dirname, "../..");
export const MAIN_JS = path.join("dist", "src", "main.js");

export interface LogLine {
  /** The raw stdout line. */
  raw: string;
  /** The parsed pino record, or null when the line is not JSON. */
  json: Record<string, any> | null;
}

export type LogPredicate = (line: LogLine) => boolean;

/**
 * The line a worker (or `all`) logs once a generation has succeeded, after publishing it; of
 * generation `id` only, when given.
 */
export function succeededLog(id?: string): LogPredicate {
  return (l) =>
    l.json?.msg === "generation succeeded" && (id === undefined || l.json.generationId === id);
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface GengateProcess {
  role: GengateRole;
  proc: ChildProcess;
  /** The port the api listens on (api and all). */
  port: number | undefined;
  /** `http://127.0.0.1:<port>` (api and all). */
  url: string;
  /** Every stdout line so far, in order. */
  logs: LogLine[];
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Resolves with the first log line (already seen or future) that matches. */
  waitForLog(pred: LogPredicate, opts?: { timeoutMs?: number; what?: string }): Promise<LogLine>;
  /** Resolves when the process has exited. */
  exited: Promise<ExitInfo>;
  /** SIGTERM, then resolves with the exit code (128 + signal number when a signal killed it). */
  stop(opts?: { timeoutMs?: number }): Promise<number>;
  /** SIGKILL, resolves once the process is gone. */
  kill(): Promise<void>;
}

export interface SpawnOptions {
  /** Working directory, where `dist/src/main.js` is found. @defaultValue the repository root */
  cwd?: string;
  /** How long to wait for the ready log lines. @defaultValue 30000 */
  readyTimeoutMs?: number;
}

const live = new Set<ChildProcess>();

/** Throws a sentence saying what to do when the program has not been built. */
export function assertBuilt(cwd = REPO_ROOT): string {
  const main = path.join(cwd, MAIN_JS);
  if (!fs.existsSync(main)) {
    throw new Error(
      `${main} is missing: the e2e tests run the built program. Run \`npm run build\` first ` +
        "(`npm test` does it before jest).",
    );
  }
  return main;
}

/**
 * The environment of a child: only what the caller gives plus PATH/HOME, never the test
 * runner's own environment. In particular the child does not inherit jest's NODE_ENV=test,
 * which would hide production behaviour (libraries such as Apollo Server act differently
 * under it), nor a developer's DATABASE_URL or REDIS_URL.
 */
function childEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const k of ["PATH", "HOME", "TMPDIR", "LANG"]) {
    if (process.env[k] !== undefined) base[k] = process.env[k];
  }
  const merged: NodeJS.ProcessEnv = { ...base };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) merged[k] = v;
  return merged;
}

function exitCodeOf(info: ExitInfo): number {
  if (info.code !== null) return info.code;
  const n = info.signal ? osConstants.signals[info.signal] : undefined;
  return 128 + (n ?? 0);
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/**
 * Starts `node dist/src/main.js <role>` and resolves once it is ready: after the
 * `api listening` line (api, all) and the `worker consuming` line (worker, all). Rejects with
 * the process's stderr and last log lines if it exits first.
 */
export async function spawnGengate(
  role: GengateRole,
  env: Record<string, string | undefined>,
  opts: SpawnOptions = {},
): Promise<GengateProcess> {
  const cwd = opts.cwd ?? REPO_ROOT;
  const main = assertBuilt(cwd);
  // The ready lines are logged at info: a quieter level would make readiness invisible.
  const level = env.LOG_LEVEL === "debug" || env.LOG_LEVEL === "trace" ? env.LOG_LEVEL : "info";
  const proc = spawn(process.execPath, [main, role], {
    cwd,
    env: childEnv({ ...env, LOG_LEVEL: level }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(proc);

  const logs: LogLine[] = [];
  let stderr = "";
  const exit = deferred<ExitInfo>();
  let exitInfo: ExitInfo | undefined;
  const waiters = new Set<{ pred: LogPredicate; d: Deferred<LogLine> }>();
  const echo = process.env.E2E_ECHO ? `[${role}:${proc.pid}] ` : null;

  const describe = () =>
    `gengate ${role} (pid ${proc.pid})` +
    (exitInfo ? ` exited with code ${exitInfo.code} signal ${exitInfo.signal}` : "") +
    `\n--- stderr ---\n${tail(stderr) || "(empty)"}` +
    `\n--- last log lines ---\n${logs
      .slice(-15)
      .map((l) => l.raw)
      .join("\n")}`;

  let pending = "";
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const raw = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (!raw.trim()) continue;
      let json: Record<string, any> | null = null;
      try {
        json = JSON.parse(raw) as Record<string, any>;
      } catch {
        json = null;
      }
      const line = { raw, json };
      logs.push(line);
      if (echo) console.log(echo + raw);
      for (const w of waiters) {
        if (w.pred(line)) {
          waiters.delete(w);
          w.d.resolve(line);
        }
      }
    }
  });
  proc.stderr!.setEncoding("utf8");
  proc.stderr!.on("data", (chunk: string) => {
    stderr += chunk;
    if (echo) process.stderr.write(echo + chunk);
  });
  proc.on("error", (err) => {
    stderr += `\n(spawn error: ${err.message})`;
  });
  proc.on("exit", (code, signal) => {
    exitInfo = { code, signal };
  });
  // "close" comes after the last stdout/stderr data: waiters then see every line.
  proc.on("close", (code, signal) => {
    exitInfo ??= { code, signal };
    live.delete(proc);
    for (const w of waiters)
      w.d.reject(new Error(`exited before the expected log line: ${describe()}`));
    waiters.clear();
    exit.resolve(exitInfo);
  });

  const waitForLog: GengateProcess["waitForLog"] = (pred, o = {}) => {
    const found = logs.find(pred);
    if (found) return Promise.resolve(found);
    if (exitInfo && !live.has(proc)) {
      return Promise.reject(
        new Error(`exited before ${o.what ?? "the expected log line"}: ${describe()}`),
      );
    }
    const d = deferred<LogLine>();
    const w = { pred, d };
    waiters.add(w);
    const timeoutMs = o.timeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      waiters.delete(w);
      d.reject(
        new Error(`no ${o.what ?? "matching log line"} within ${timeoutMs} ms: ${describe()}`),
      );
    }, timeoutMs);
    return d.promise.finally(() => clearTimeout(timer));
  };

  const kill = async () => {
    if (live.has(proc)) proc.kill("SIGKILL");
    await exit.promise;
  };

  const stop: GengateProcess["stop"] = async (o = {}) => {
    if (live.has(proc) && !exitInfo) proc.kill("SIGTERM");
    const timeoutMs = o.timeoutMs ?? 20_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const result = await Promise.race([exit.promise, timedOut]);
    clearTimeout(timer);
    if (result === "timeout") {
      await kill();
      throw new Error(`did not exit within ${timeoutMs} ms of SIGTERM (killed): ${describe()}`);
    }
    return exitCodeOf(result);
  };

  const handle: GengateProcess = {
    role,
    proc,
    port: undefined,
    url: "",
    logs,
    stderr: () => stderr,
    waitForLog,
    exited: exit.promise,
    stop,
    kill,
  };

  try {
    const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
    if (role === "sim-provider") {
      const line = await waitForLog((l) => l.json?.msg === "sim-provider listening", {
        timeoutMs: readyTimeoutMs,
        what: '"sim-provider listening"',
      });
      handle.port = Number(line.json!.port);
      handle.url = `http://127.0.0.1:${handle.port}`;
      return handle;
    }
    if (role !== "worker") {
      const line = await waitForLog((l) => l.json?.msg === "api listening", {
        timeoutMs: readyTimeoutMs,
        what: '"api listening"',
      });
      handle.port = Number(line.json!.port);
      handle.url = `http://127.0.0.1:${handle.port}`;
    }
    if (role !== "api") {
      await waitForLog((l) => l.json?.msg === "worker consuming", {
        timeoutMs: readyTimeoutMs,
        what: '"worker consuming"',
      });
    }
  } catch (err) {
    await kill();
    throw err;
  }
  return handle;
}

/**
 * Runs a one-shot command (`create-key`, `migrate`) of the built program to completion.
 */
export async function runGengate(
  args: string[],
  env: Record<string, string | undefined>,
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cwd = opts.cwd ?? REPO_ROOT;
  const main = assertBuilt(cwd);
  const proc = spawn(process.execPath, [main, ...args], {
    cwd,
    env: childEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(proc);
  let stdout = "";
  let stderr = "";
  proc.stdout!.setEncoding("utf8").on("data", (c: string) => (stdout += c));
  proc.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const info = await new Promise<ExitInfo>((resolve) => {
    proc.on("close", (code, signal) => resolve({ code, signal }));
    proc.on("error", (err) => {
      stderr += `\n(spawn error: ${err.message})`;
    });
  });
  clearTimeout(timer);
  live.delete(proc);
  return { code: exitCodeOf(info), stdout, stderr };
}

/** `create-key --role admin` on the given database; returns the printed key. */
export async function createAdminKey(
  env: Record<string, string | undefined>,
  opts: { cwd?: string } = {},
): Promise<string> {
  const res = await runGengate(["create-key", "--role", "admin"], env, opts);
  const key = res.stdout.trim().split("\n").pop()?.trim() ?? "";
  if (res.code !== 0 || !key) {
    throw new Error(
      `create-key exited with ${res.code}\n--- stdout ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`,
    );
  }
  return key;
}

/** How many gengate children are alive right now. */
export function liveGengates(): number {
  return live.size;
}

/** SIGKILLs every child still alive and waits for them to be gone. */
export async function stopAllGengates(): Promise<void> {
  await Promise.all(
    [...live].map(
      (proc) =>
        new Promise<void>((resolve) => {
          if (proc.exitCode !== null || proc.signalCode !== null) {
            live.delete(proc);
            resolve();
            return;
          }
          proc.once("close", () => resolve());
          proc.kill("SIGKILL");
        }),
    ),
  );
  live.clear();
}

// Last resort when the test runner itself goes away: nothing async runs here.
process.on("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});

// A safety net in every file that imports this helper, after the file's own afterAll hooks.
if (typeof afterAll === "function") afterAll(() => stopAllGengates());
