import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { deferred } from "../../src/common/deferred";
import { freePort } from "./ports";

/**
 * A private `redis-server` (or Sentinel) for tests that must not touch the shared Redis: it
 * keeps nothing on disk, listens on a free port of 127.0.0.1 and is resolved once it logs that
 * it is ready. `stop()` kills it and removes its directory.
 */
export interface RedisServer {
  port: number;
  url: string;
  proc: ChildProcess;
  /** Every line it logged so far. */
  logs: string[];
  /** Resolves with the first logged line (seen or future) that matches. */
  waitForLog(pattern: RegExp): Promise<string>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

export async function startRedisServer(
  opts: { sentinel?: string[]; args?: string[] } = {},
): Promise<RedisServer> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-redis-"));
  const conf = path.join(dir, "redis.conf");
  // A Sentinel rewrites its configuration file, so both kinds get one of their own.
  fs.writeFileSync(
    conf,
    [`port ${port}`, "bind 127.0.0.1", `dir ${dir}`, ...(opts.sentinel ?? [])].join("\n") + "\n",
  );
  const args = opts.sentinel
    ? [conf, "--sentinel"]
    : [conf, "--save", "", "--appendonly", "no", ...(opts.args ?? [])];
  const proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  live.add(proc);
  const logs: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  readline.createInterface({ input: proc.stdout! }).on("line", (line) => {
    logs.push(line);
    for (const w of [...waiters]) {
      if (w.pattern.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const exited = deferred<void>();
  proc.once("exit", () => {
    live.delete(proc);
    exited.resolve();
  });
  const waitForLog = (pattern: RegExp): Promise<string> => {
    const seen = logs.find((l) => pattern.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      waiters.push({ pattern, resolve });
      void exited.promise.then(() =>
        reject(new Error(`redis-server exited before logging ${pattern}:\n${logs.join("\n")}`)),
      );
    });
  };
  await waitForLog(opts.sentinel ? /Sentinel ID is/ : /Ready to accept connections/);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    proc,
    logs,
    waitForLog,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await exited.promise;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
