import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const MAIN = path.resolve(__dirname, "../../dist/src/main.js");

function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "silent", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("the gengate command line", () => {
  let dataDir: string;

  beforeAll(() => {
    if (!fs.existsSync(MAIN))
      throw new Error(`${MAIN} is missing: run \`npm run build\` first (npm test does)`);
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-cli-"));
  });

  afterAll(() => {
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("prints usage and exits 2 without a command, or with an unknown one", async () => {
    const none = await run([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toMatch(/usage: gengate <command>/);
    const unknown = await run(["serve"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "serve"/);
  });

  it("refuses invalid configuration with a sentence naming the variable", async () => {
    const res = await run(["all"], { PORT: "eighty", DATA_DIR: dataDir });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/Invalid configuration:\n\s+PORT:/);
  });

  it("refuses a database without a token secret", async () => {
    const res = await run(["migrate"], { DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/TOKEN_SECRET: required when DATABASE_URL is set/);
  });

  it("refuses to run an api or worker alone without Redis", async () => {
    for (const role of ["api", "worker"]) {
      const res = await run([role], { DATA_DIR: dataDir });
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(/needs REDIS_URL; without Redis run "all"/);
    }
  });

  it("refuses create-key without a valid role", async () => {
    const res = await run(["create-key", "--role", "owner"], { DATA_DIR: dataDir });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--role admin or --role partner/);
  });

  it("prints the schema that is committed", async () => {
    const res = await run(["print-schema"]);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(
      fs.readFileSync(path.resolve(__dirname, "../../schema/schema.graphql"), "utf8"),
    );
  });
});
