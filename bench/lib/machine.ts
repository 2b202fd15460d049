/** The machine a run was made on, written into every results file. */
import fs from "node:fs";
import os from "node:os";
import Redis from "ioredis";
import { Client as PgClient } from "pg";
import type { Machine } from "./scenario";

export async function describeMachine(pgAdminUrl: string, redisUrl: string): Promise<Machine> {
  const cpus = os.cpus();
  const model = cpus[0]?.model.replace(/\s+/g, " ").trim() ?? "unknown CPU";
  const pg = new PgClient({ connectionString: pgAdminUrl });
  await pg.connect();
  const pgVersion = String(
    ((await pg.query("SHOW server_version")).rows[0] as { server_version: string }).server_version,
  );
  await pg.end();
  const redis = new Redis(redisUrl, { lazyConnect: true });
  await redis.connect();
  const info = await redis.info("server");
  redis.disconnect();
  const redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? "?";
  const distro =
    /PRETTY_NAME="([^"]+)"/.exec(safeRead("/etc/os-release"))?.[1] ??
    `${os.type()} ${os.release()}`;
  const items = [
    `${cpus.length} cores (${model}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GB memory`,
    `${distro}, kernel ${os.release()}`,
    `Node ${process.version}, PostgreSQL ${pgVersion}, Redis ${redisVersion}, all on this machine`,
    `load average at the start: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(", ")}`,
  ];
  return { line: items.join("; "), markdown: items.map((i) => `- ${i}`).join("\n") };
}

function safeRead(file: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return "";
  }
}
