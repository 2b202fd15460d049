import type { Browser, Page } from "playwright-core";
import { describeInBrowser, launchBrowser, screenshot } from "../helpers/browser";
import { gql } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

describeInBrowser("the demo client in a browser", () => {
  let env: TestEnv;
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let token: string;

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env);
    const { key } = await partner(server, await adminKey(server));
    // What a partner's backend does before handing the page to its end user.
    const minted = await gql<{ createClientToken: { token: string } }>(
      server.url,
      `mutation { createClientToken(userId: "user-42", ttlSeconds: 900, canGenerate: true) { token } }`,
      {},
      key,
    );
    token = minted.data!.createClientToken.token;
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 900, height: 1000 } });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await env?.cleanup();
  });

  it("submits a prompt with a client token and follows it live to the rendered image", async () => {
    await page.goto(`${server.url}/demo#token=${token}`);
    await page.locator("#prompt").fill("a lighthouse at dusk [sim:latency=1500]");
    await page.locator("#submit").click();

    await page.locator("#events li", { hasText: "PROGRESS" }).first().waitFor();
    await page.locator('#status[data-status="SUCCEEDED"]').waitFor({ timeout: 15_000 });
    const image = page.locator("#result-image");
    await image.waitFor();
    const size = await image.evaluate(
      async (img: { decode(): Promise<void>; naturalWidth: number; naturalHeight: number }) => {
        await img.decode();
        return { width: img.naturalWidth, height: img.naturalHeight };
      },
    );
    expect(size.width).toBeGreaterThan(0);
    expect(await page.locator("#progress").evaluate((p: { value: number }) => p.value)).toBe(1);
    expect(await page.locator("#cost").textContent()).toMatch(/^\$\d+\.\d{4}$/);
    expect(await page.locator("#cache").textContent()).toBe("miss");
    expect(await page.locator("#attempts li").count()).toBe(1);
    await screenshot(page, "demo");
  }, 30_000);

  it("shows a cache hit for the same prompt again, at no cost", async () => {
    await page.locator("#submit").click();
    await page.locator("#cache", { hasText: "hit (EXACT)" }).waitFor();
    await page.locator('#status[data-status="SUCCEEDED"]').waitFor();
    expect(await page.locator("#cost").textContent()).toBe("$0.0000");
  });
});
