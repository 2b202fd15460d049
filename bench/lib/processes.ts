/**
 * gengate as real processes, started from the built program (`dist/src/main.js`) the way an
 * operator starts it: `api`, `worker`, `sim-provider`, `create-key`. Each process's stdout is
 * its JSON log; the bench reads it until the process says it is ready, then only drains it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import type { BenchContext } from "./scenario";

export const MAIN = path.resolve(__dirname, "../../src/main.js");

export type Role = "api" | "worker" | "all" | "sim-provider" | "ws-broadcast";

export interface GengateProcess {
  role: Role;
  child: ChildProcess;
  pid: number;
  /** The HTTP port (api, all, sim-provider). */
  port?: number;
  url?: string;
  /** A worker's metrics listener, when it has one. */
  metricsPort?: number;
  /** The V8 inspector's WebSocket URL, for processes started with `inspect`. */
  inspectorUrl?: string;
  /** The last lines the process wrote at warn level or above (for errors). */
  problems: string[];
}

export interface StartOptions {
  /** The program to run: another build's `dist/src/main.js`, to compare with. @defaultValue MAIN */
  main?: string;
  /** Open the V8 inspector on a free loopback port (heap size after a GC; see memory.ts). */
  inspect?: boolean;
  /** Extra node flags. */
  nodeArgs?: string[];
  /** How long to wait for the ready line. @defaultValue 60 s */
  timeoutMs?: number;
  /** Arguments after the role (or, for `ws-broadcast`, the script's arguments). */
  args?: string[];
  /** Print the warnings and errors it logs once ready too, not only keep them for errors. */
  echoProblems?: boolean;
}

const READY: Record<Role, string> = {
  api: "api listening",
  all: "api listening",
  worker: "worker consuming",
  "sim-provider": "sim-provider listening",
  "ws-broadcast": "ws-broadcast listening",
};

/** Starts `gengate <role>` and resolves once it logs that it is ready. */
export function startGengate(
  ctx: BenchContext,
  role: Role,
  env: Record<string, string>,
  opts: StartOptions = {},
): Promise<GengateProcess> {
  const nodeArgs = [...(opts.nodeArgs ?? [])];
  if (opts.inspect) nodeArgs.push("--inspect=127.0.0.1:0");
  if (ctx.cpuProf?.roles.has(role)) {
    fs.mkdirSync(ctx.cpuProf.dir, { recursive: true });
    nodeArgs.push("--cpu-prof", `--cpu-prof-dir=${ctx.cpuProf.dir}`);
  }
  const program =
    role === "ws-broadcast" ? [path.join(__dirname, "ws-broadcast.js")] : [opts.main ?? MAIN, role];
  const child = spawn(process.execPath, [...nodeArgs, ...program, ...(opts.args ?? [])], {
    env: {
      ...process.env,
      LOG_LEVEL: "info",
      HOST: "127.0.0.1",
      PORT: "0",
      METRICS_PORT: role === "worker" ? "0" : "off",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc: GengateProcess = { role, child, pid: child.pid!, problems: [] };
  const keep = (line: string) => {
    proc.problems.push(line);
    if (proc.problems.length > 20) proc.problems.shift();
  };
  return new Promise((resolve, reject) => {
    let ready = false;
    let inspectorWanted = Boolean(opts.inspect);
    let listening = false;
    const done = () => {
      if (ready || !listening || inspectorWanted) return;
      ready = true;
      clearTimeout(timer);
      resolve(proc);
    };
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${role} not ready after ${opts.timeoutMs ?? 60_000} ms`));
    }, opts.timeoutMs ?? 60_000);
    const out = readline.createInterface({ input: child.stdout! });
    out.on("line", (line) => {
      // Cheap test first: after the start, most lines are per-job info lines.
      if (
        line.includes('"level":40') ||
        line.includes('"level":50') ||
        line.includes('"level":60')
      ) {
        keep(line);
        if (ready && opts.echoProblems)
          process.stderr.write(`[${role} ${proc.pid}] ${line.slice(0, 500)}\n`);
      }
      if (ready || (!line.includes("listening") && !line.includes("consuming"))) return;
      try {
        const msg = JSON.parse(line) as { msg?: string; port?: number };
        if (msg.msg === "metrics listening") proc.metricsPort = msg.port;
        else if (msg.msg === READY[role]) {
          if (msg.port !== undefined) {
            proc.port = msg.port;
            proc.url = `http://127.0.0.1:${msg.port}`;
          }
          listening = true;
        }
        // The worker logs "worker consuming" after its metrics listener.
        done();
      } catch {
        // not a log line
      }
    });
    const err = readline.createInterface({ input: child.stderr! });
    err.on("line", (line) => {
      const m = /Debugger listening on (ws:\/\/\S+)/.exec(line);
      if (m) {
        proc.inspectorUrl = m[1];
        inspectorWanted = false;
        done();
        return;
      }
      if (/^(For help, see|Debugger (attached|ending))/.test(line)) return;
      keep(line);
      process.stderr.write(`[${role} ${proc.pid}] ${line}\n`);
    });
    child.once("exit", (code, signal) => {
      if (!ready) {
        clearTimeout(timer);
        reject(
          new Error(
            `${role} exited with ${code ?? signal} before it was ready:\n${proc.problems.join("\n")}`,
          ),
        );
      }
    });
  });
}

/** SIGTERM, then the graceful shutdown; SIGKILL if it has not exited after `graceMs`. */
export function stopGengate(p: GengateProcess | undefined, graceMs = 30_000): Promise<void> {
  if (!p) return Promise.resolve();
  return new Promise((resolve) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
    const kill = setTimeout(() => p.child.kill("SIGKILL"), graceMs);
    p.child.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    p.child.kill("SIGTERM");
  });
}

/** Runs a gengate command (of `main`, another build's, when given) and returns its stdout. */
export function runGengate(
  args: string[],
  env: Record<string, string>,
  main = MAIN,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], {
      env: { ...process.env, LOG_LEVEL: "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.once("exit", (code) =>
      code === 0
        ? resolve(out.trim())
        : reject(new Error(`gengate ${args[0]} exited with ${code}: ${err.trim()}`)),
    );
  });
}

/** A process's resident set size, from /proc (Linux). */
export function rssBytes(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}
