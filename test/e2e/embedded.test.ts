import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  assertBuilt,
  createAdminKey,
  spawnGengate,
  stopAllGengates,
  type GengateProcess,
} from "../helpers/process";

/**
 * The embedded default: the built program with no DATABASE_URL and no REDIS_URL runs on PGlite
 * in its data folder, with the in-process queue and pub/sub, and keeps its data there.
 * PGlite needs several seconds to create or open a data folder, hence the long timeouts.
 */

const SLOW = 60_000;

const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) {
    type
    generation { id status progress outputs { url contentType width height bytes } }
  }
}`;

describe("the built program with no DATABASE_URL and no REDIS_URL", () => {
  let dataDir: string;
  let env: Record<string, string | undefined>;
  let server: GengateProcess | undefined;
  const sockets: WsClient[] = [];
  let admin: string;
  let partnerKey: string;
  let generationId: string;

  beforeAll(() => {
    assertBuilt();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-embedded-"));
    env = {
      DATABASE_URL: undefined,
      REDIS_URL: undefined,
      TOKEN_SECRET: undefined,
      DATA_DIR: dataDir,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      SIM_LATENCY_MS: "300",
      SIM_LATENCY_JITTER: "0",
      SIM_PROGRESS_STEPS: "3",
      POLL_MIN_MS: "20",
      POLL_MAX_MS: "200",
    };
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose().catch(() => undefined)));
    await stopAllGengates();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  function socket(url: string, key: string): WsClient {
    const s = wsClient(url, key);
    sockets.push(s);
    return s;
  }

  it(
    "create-key prints an ADMIN key for a fresh data folder",
    async () => {
      admin = await createAdminKey(env);
      expect(admin).toMatch(/^\S{20,}$/);
      expect(fs.existsSync(path.join(dataDir, "pgdata"))).toBe(true);
      // With no TOKEN_SECRET one is generated and kept in the folder, so tokens survive restarts.
      expect(fs.existsSync(path.join(dataDir, "token-secret"))).toBe(true);
    },
    SLOW,
  );

  it(
    "`all` serves createAccount and generate, and streams an IMAGE to SUCCEEDED with a PNG output",
    async () => {
      expect(admin).toBeDefined();
      server = await spawnGengate("all", env);

      const account = await gql(
        server.url,
        `mutation { createAccount(name: "embedded") { account { id } apiKey { key role } } }`,
        {},
        admin,
      );
      // create-key already made an ADMIN key: no first-start key is printed.
      expect(server.logs.some((l) => /^first start/.test(l.json?.msg ?? ""))).toBe(false);
      expect(account.errors).toBeUndefined();
      expect(account.data!.createAccount.apiKey.role).toBe("PARTNER");
      partnerKey = account.data!.createAccount.apiKey.key;

      const res = await gql(
        server.url,
        `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`,
        {
          input: {
            userId: "u-embedded",
            mediaType: "IMAGE",
            prompt: "a lighthouse on a cliff",
            width: 96,
            height: 64,
          },
        },
        partnerKey,
      );
      expect(res.errors).toBeUndefined();
      generationId = res.data!.generate.id;

      const sub = socket(server.url, partnerKey).subscribe(WATCH, { id: generationId });
      const done = await sub.until((m) => m.generationUpdated.generation.status === "SUCCEEDED");
      await sub.completed.promise;
      expect(sub.errors).toEqual([]);
      const g = done.generationUpdated.generation;
      expect(done.generationUpdated.type).toBe("SUCCEEDED");
      expect(g.progress).toBe(1);
      expect(g.outputs).toHaveLength(1);
      expect(g.outputs[0]).toMatchObject({ contentType: "image/png", width: 96, height: 64 });

      const image = await fetch(g.outputs[0].url);
      expect(image.status).toBe(200);
      expect(image.headers.get("content-type")).toBe("image/png");
      const bytes = Buffer.from(await image.arrayBuffer());
      expect(bytes.subarray(0, 8)).toEqual(
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      );
      expect(bytes.length).toBe(g.outputs[0].bytes);
    },
    SLOW,
  );

  it(
    "stops on SIGTERM with exit code 0",
    async () => {
      expect(server).toBeDefined();
      const code = await server!.stop();
      expect(server!.logs.some((l) => l.json?.msg === "shutting down")).toBe(true);
      expect(code).toBe(0);
      expect(server!.logs.some((l) => l.json?.msg === "stopped")).toBe(true);
    },
    SLOW,
  );

  it(
    "keeps accounts, keys and generations in the data folder across a restart",
    async () => {
      expect(generationId).toBeDefined();
      const again = await spawnGengate("all", env);
      const res = await gql(
        again.url,
        `query($id: ID!) { generation(id: $id) { id status prompt outputs { url contentType } } }`,
        { id: generationId },
        partnerKey,
      );
      expect(res.errors).toBeUndefined();
      expect(res.data!.generation).toMatchObject({
        id: generationId,
        status: "SUCCEEDED",
        prompt: "a lighthouse on a cliff",
      });
      const image = await fetch(res.data!.generation.outputs[0].url);
      expect(image.status).toBe(200);
      expect(
        Buffer.from(await image.arrayBuffer())
          .subarray(1, 4)
          .toString(),
      ).toBe("PNG");

      // The cache on PGlite (pgvector's HNSW included): the in-process exact index started
      // empty, so the identical request is found by its embedding and recognised as exact.
      const hit = async (prompt: string) =>
        (
          await gql(
            again.url,
            `mutation($input: GenerateInput!) {
              generate(input: $input) { status cached cacheHit { kind sourceGenerationId similarity } }
            }`,
            { input: { userId: "u-embedded", mediaType: "IMAGE", prompt, width: 96, height: 64 } },
            partnerKey,
          )
        ).data!.generate;
      expect(await hit("A lighthouse on a cliff")).toMatchObject({
        status: "SUCCEEDED",
        cached: true,
        cacheHit: { kind: "EXACT", sourceGenerationId: generationId, similarity: null },
      });
      const semantic = await hit("lighthouses on the cliff");
      expect(semantic.cacheHit).toMatchObject({
        kind: "SEMANTIC",
        sourceGenerationId: generationId,
      });
      expect(semantic.cacheHit.similarity).toBeGreaterThanOrEqual(0.85);
      await again.stop();
    },
    SLOW,
  );
});
