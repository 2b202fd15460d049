import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import Redis from "ioredis";
import { deferred } from "../../src/common/deferred";
import { freePort } from "./ports";

/**
 * A private `redis-server` (or Sentinel) for tests that must not touch the shared Redis: it
 * keeps nothing on disk unless asked to, listens on a free port of 127.0.0.1 and is resolved
 * once it logs that it is ready. `restart()` brings it back on the same port; `stop()` kills it
 * and removes its directory.
 */
export interface RedisServer {
  port: number;
  url: string;
  /** The running process (a new one after each restart). */
  proc: ChildProcess;
  /** Every line it logged so far, across restarts. */
  logs: string[];
  /** Resolves with the first logged line (seen or future) that matches. */
  waitForLog(pattern: RegExp): Promise<string>;
  /**
   * Kills the server (SIGKILL: no chance to save or to close connections politely) and starts
   * it again on the same port. With `flush`, it comes back empty; without, with what it held
   * (saved first). `whileDown` runs between the two (the outage lasts until it resolves).
   */
  restart(opts: { flush: boolean; whileDown?: () => Promise<unknown> }): Promise<void>;
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
  const ready = opts.sentinel ? /Sentinel ID is/ : /Ready to accept connections/;
  const url = `redis://127.0.0.1:${port}`;
  const logs: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  let proc!: ChildProcess;
  let exited!: Promise<void>;

  /** The first line from `logs[from]` on that matches; rejects if the server exits first. */
  const nextLog = (pattern: RegExp, from: number): Promise<string> => {
    const seen = logs.slice(from).find((l) => pattern.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      waiters.push({ pattern, resolve });
      void exited.then(() =>
        reject(new Error(`redis-server exited before logging ${pattern}:\n${logs.join("\n")}`)),
      );
    });
  };

  const launch = async () => {
    const from = logs.length;
    proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    live.add(proc);
    const onLine = (line: string) => {
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.pattern.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    };
    // A configuration error goes to stderr: keep it for the error message.
    readline.createInterface({ input: proc.stdout! }).on("line", onLine);
    readline.createInterface({ input: proc.stderr! }).on("line", onLine);
    const gone = deferred<void>();
    exited = gone.promise;
    const p = proc;
    p.once("error", (err) => {
      logs.push(`(spawn error: ${err.message})`);
      live.delete(p);
      gone.resolve();
    });
    // "close" comes after the last output: a rejection then shows every line.
    p.once("close", () => {
      live.delete(p);
      gone.resolve();
    });
    await nextLog(ready, from);
  };

  const kill = async () => {
    if (live.has(proc)) {
      proc.kill("SIGKILL");
      await exited;
    }
  };

  try {
    await launch();
  } catch (err) {
    await kill();
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    url,
    get proc() {
      return proc;
    },
    logs,
    waitForLog: (pattern) => nextLog(pattern, 0),
    async restart({ flush, whileDown }) {
      fs.rmSync(path.join(dir, "dump.rdb"), { force: true });
      if (!flush) {
        const r = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
        await r.connect();
        try {
          await r.save();
        } finally {
          r.disconnect();
        }
      }
      await kill();
      try {
        await whileDown?.();
      } finally {
        await launch();
      }
    },
    async stop() {
      await kill();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
