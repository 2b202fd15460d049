import fs from "node:fs";
import path from "node:path";

/**
 * PGlite is a database inside this process: a second process opening the same folder would
 * corrupt it. A pid file refuses that with a clear message, and is taken over when the
 * process that wrote it is gone.
 */
export function lockDataDir(dir: string): () => void {
  const file = path.join(dir, "gengate.pid");
  for (let tries = 0; tries < 2; tries++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: "wx" });
      return () => fs.rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(fs.readFileSync(file, "utf8"));
      if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) {
        throw new Error(
          `Another gengate process (pid ${pid}) is using the embedded database in ${dir}; stop it first, or set DATA_DIR to another folder`,
        );
      }
      fs.rmSync(file, { force: true });
    }
  }
  throw new Error(`Could not lock ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
