import type { Browser, Page } from "playwright-core";
import { startSimServer, type SimServer } from "../../src/providers/simulated/sim-server";
import { describeInBrowser, launchBrowser, screenshot } from "../helpers/browser";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const TOKEN = "sim-token-dashboard";
const SECRET = "whsec_" + Buffer.from("dashboard-webhook-secret-0123456").toString("base64");

describeInBrowser("the operators' dashboard in a browser", () => {
  let env: TestEnv;
  let primary: SimServer;
  let fallback: SimServer;
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let admin: string;
  let key: string;
  let socket: WsClient;

  beforeAll(async () => {
    env = await createTestEnv();
    const sim = {
      port: 0,
      apiToken: TOKEN,
      webhookSecret: SECRET,
      latencyMs: 150,
      latencyJitter: 0,
      progressSteps: 1,
    };
    primary = await startSimServer(sim);
    fallback = await startSimServer(sim);
    server = await startTestServer(env, {
      overrides: {
        SIM_PROVIDER_URL: `${primary.url},${fallback.url}`,
        SIM_PROVIDER_TOKEN: TOKEN,
        SIM_PROVIDER_WEBHOOK_SECRET: SECRET,
        CIRCUIT_MIN_REQUESTS: "3",
        CIRCUIT_FAILURE_THRESHOLD: "0.5",
        CIRCUIT_COOLDOWN_SECONDS: "600",
        PROVIDER_TIMEOUT_SECONDS: "1",
      },
    });
    admin = await adminKey(server);
    key = (await partner(server, admin)).key;
    socket = wsClient(server.url, key);
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await socket?.dispose();
    await server?.stop();
    await Promise.all([primary?.close(), fallback?.close()]);
    await env?.cleanup();
  });

  async function finish(prompt: string): Promise<string> {
    const res = await gql<{ generate: { id: string } }>(
      server.url,
      `mutation($in: GenerateInput!) { generate(input: $in) { id } }`,
      { in: { userId: "u", mediaType: "IMAGE", prompt, width: 64, height: 64 } },
      key,
    );
    const done = await socket
      .subscribe(
        `subscription($id: ID!) { generationUpdated(id: $id) { type generation { status } } }`,
        { id: res.data!.generate.id },
      )
      .until((m) => ["SUCCEEDED", "FAILED"].includes(m.generationUpdated.type));
    return done.generationUpdated.generation.status;
  }

  it("shows live circuits, and a failing provider's circuit turning open", async () => {
    for (const prompt of ["a harbour", "a harbour", "a meadow"]) {
      expect(await finish(prompt)).toBe("SUCCEEDED");
    }
    await page.goto(`${server.url}/dashboard`);
    await page.locator("#key").fill(admin);
    await page.getByRole("button", { name: "Use" }).click();
    await page.locator('body[data-stats-loaded="true"]').waitFor();
    await page.locator('#connection[data-state="open"]').waitFor();
    const primaryCircuit = page.locator('tr[data-provider="simulated"] .circuit');
    expect(await primaryCircuit.getAttribute("data-circuit")).toBe("CLOSED");
    expect(await page.locator("#hit-rate").textContent()).toBe("33.3%");
    expect(await page.locator("#queued").textContent()).toBe("0");
    expect(await page.locator(".uplot").count()).toBe(3);

    primary.setBehaviour({ mode: "down" });
    // Each still succeeds, on the fallback; the primary's failures open its circuit.
    for (let i = 0; i < 3; i++) expect(await finish(`primary down ${i}`)).toBe("SUCCEEDED");

    await page.locator('tr[data-provider="simulated"] .circuit[data-circuit="OPEN"]').waitFor();
    expect(
      await page.locator('tr[data-provider="simulated-2"] .circuit').getAttribute("data-circuit"),
    ).toBe("CLOSED");

    // What the anomaly detector raises when a provider's error rate jumps, live on alertRaised.
    await server.app.services.alerts.raise({
      accountId: null,
      userId: null,
      kind: "ERROR_RATE_ANOMALY",
      severity: "critical",
      message: "simulated: attempt error rate 100% against a baseline of 0%",
      data: { metric: "provider_error_rate", key: "simulated" },
    });
    await page
      .locator('#alerts li[data-kind="ERROR_RATE_ANOMALY"][data-severity="critical"]')
      .waitFor();
    await screenshot(page, "dashboard");
  }, 45_000);

  it("refuses a key that is not ADMIN", async () => {
    const other = await browser.newPage();
    try {
      await other.goto(`${server.url}/dashboard`);
      await other.locator("#key").fill(key);
      await other.getByRole("button", { name: "Use" }).click();
      await other.locator("#error", { hasText: "ADMIN" }).waitFor();
    } finally {
      await other.close();
    }
  });
});
