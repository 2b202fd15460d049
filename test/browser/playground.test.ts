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

describeInBrowser("the GraphQL playground in a browser", () => {
  let env: TestEnv;
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let key: string;

  beforeAll(async () => {
    env = await createTestEnv();
    // No worker here: the subscription test starts one once the browser is watching, so the
    // generation's whole life streams to it however slow the machine is.
    server = await startTestServer(env, { worker: false });
    key = (await partner(server, await adminKey(server))).key;
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await env?.cleanup();
  });

  it("serves GraphiQL to a browser and keeps JSON for API clients", async () => {
    const html = await fetch(`${server.url}/graphql`, { headers: { accept: "text/html" } });
    expect(html.status).toBe(200);
    expect(html.headers.get("content-type")).toMatch(/text\/html/);
    expect(html.headers.get("cache-control")).toBe("no-cache");
    const asset = /\/assets\/playground-[\w-]+\.js/.exec(await html.text())![0];
    const js = await fetch(`${server.url}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    // Sent compressed to a client that accepts it (fetch asks for gzip and br).
    expect(js.headers.get("content-encoding")).toBe("gzip");
    const gone = await fetch(`${server.url}/assets/nothing-here.js`);
    expect(gone.status).toBe(404);
    expect(await gone.text()).toBe("not found\n");

    const api = await fetch(`${server.url}/graphql?query=%7B__typename%7D`, {
      headers: { accept: "application/json", "apollo-require-preflight": "1" },
    });
    expect(await api.json()).toEqual({ data: { __typename: "Query" } });
  });

  it("is off where PLAYGROUND is false (the production default)", async () => {
    const off = await startTestServer(env, { worker: false, overrides: { PLAYGROUND: "false" } });
    try {
      const res = await fetch(`${off.url}/graphql`, { headers: { accept: "text/html" } });
      expect(res.headers.get("content-type")).not.toMatch(/text\/html/);
      expect((await res.text()).toLowerCase()).not.toContain("sandbox");
    } finally {
      await off.stop();
    }
  });

  it("runs the generationUpdated subscription over graphql-ws and shows its events", async () => {
    const created = await gql<{ generate: { id: string } }>(
      server.url,
      `mutation($in: GenerateInput!) { generate(input: $in) { id } }`,
      {
        in: {
          userId: "u1",
          mediaType: "IMAGE",
          prompt: "a lighthouse [sim:latency=1500]",
          width: 256,
          height: 256,
        },
      },
      key,
    );
    const id = created.data!.generate.id;

    await page.goto(`${server.url}/graphql#generation=${id}`);
    await page.locator("#gg-key").fill(key);
    await page.getByRole("button", { name: "Use" }).click();
    await page.locator("#gg-key-state", { hasText: "key set" }).waitFor();

    // Opened for one generation, the playground starts on the tab that watches it.
    await page.locator(".graphiql-tab-active", { hasText: "Watch" }).waitFor();
    await page.locator(".graphiql-editor-tool").getByText(id).waitFor();
    await page.locator(".graphiql-execute-button").click();

    const result = page.locator(".result-window");
    await result
      .getByText(/"QUEUED"/)
      .first()
      .waitFor({ timeout: 15_000 });
    const worker = await startTestServer(env, { api: false });
    try {
      await result
        .getByText(/"PROGRESS"/)
        .first()
        .waitFor({ timeout: 15_000 });
      await result
        .getByText(/"SUCCEEDED"/)
        .first()
        .waitFor({ timeout: 15_000 });
    } finally {
      await worker.stop();
    }
    await screenshot(page, "playground");
    expect(await result.textContent()).toContain("image/png");
  }, 60_000);
});
