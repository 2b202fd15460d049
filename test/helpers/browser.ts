import fs from "node:fs";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { defaultWebDir } from "../../src/http/web-pages";

/**
 * Headless Chromium for the browser tests: Debian's `chromium` (or CHROMIUM_PATH), driven by
 * playwright-core. Without it, or without the built pages, the suites skip and say why.
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS_DIR = path.resolve(__dirname, "../../test-artifacts");

function missing(): string | null {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    return `no Chromium at ${CHROMIUM_PATH} (apt-get install -y chromium, or set CHROMIUM_PATH)`;
  }
  if (!fs.existsSync(path.join(defaultWebDir(), "playground.html"))) {
    return `the pages are not built in ${defaultWebDir()} (npm run build)`;
  }
  return null;
}

/** `describe`, or a skipped one whose name says what is missing. */
export function describeInBrowser(name: string, fn: () => void): void {
  const reason = missing();
  if (reason) {
    console.warn(`browser tests skipped: ${reason}`);
    describe.skip(`${name} (skipped: ${reason})`, fn);
  } else {
    describe(name, fn);
  }
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    // CI runs as root, where Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/** Saves a screenshot under test-artifacts/ (git-ignored); returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}
