import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

/**
 * The embedded default has no configuration, yet tokens must survive a restart: the secret
 * is generated once and kept (owner-only) in the data folder.
 */
export function embeddedSecret(dataDir: string): string {
  const file = path.resolve(dataDir, "token-secret");
  try {
    return fs.readFileSync(file, "utf8").trim();
  } catch {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const secret = randomBytes(32).toString("base64url");
    fs.writeFileSync(file, secret, { mode: 0o600, flag: "wx" });
    return secret;
  }
}
