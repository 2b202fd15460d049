import { deferred } from "../../src/common/deferred";
import { CatalogRepository } from "../../src/cost/catalog.repository";
import { BUILTIN_MODELS, PROVIDER_MODELS } from "../../src/cost/model-catalog";
import type { PostgresModelCatalog } from "../../src/cost/postgres-model-catalog";
import { errorCode, gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const MODEL_FIELDS = `name mediaType quality qualityClass baseCostUsd providers deprecated available
  pricing { baseCostUsd perMegapixel referenceMegapixels perSecond batchDiscount }
  limits { minSize maxSize defaultWidth defaultHeight minDurationSeconds maxDurationSeconds defaultDurationSeconds }
  routes { provider model baseCostUsd batchDiscount priceOverride configured }
  alternates aliases typicalSeconds timeoutSeconds`;
const MODELS = `query($mediaType: MediaType, $all: Boolean) {
  models(mediaType: $mediaType, includeUnavailable: $all) { ${MODEL_FIELDS} }
}`;
const UPSERT = `mutation($input: ModelInput!) { upsertModel(input: $input) { ${MODEL_FIELDS} } }`;
const DEPRECATE = `mutation($name: String!, $deprecated: Boolean!) {
  deprecateModel(name: $name, deprecated: $deprecated) { name deprecated }
}`;
const GENERATE = `mutation($input: GenerateInput!) {
  generate(input: $input) { id status model estimatedCostUsd }
}`;
const ESTIMATE = `query($input: GenerateInput!) {
  estimateCost(input: $input) { model estimatedCostUsd provider breakdown { baseCostUsd batchDiscount } }
}`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) { type generation { id status model costUsd provider } }
}`;

/** A valid new image model; each bad-input case spoils one field of it. */
function imageModel(name = "test-image"): Record<string, any> {
  return {
    name,
    mediaType: "IMAGE",
    quality: 6,
    pricing: { baseCostUsd: 0.01, perMegapixel: true, referenceMegapixels: 1, batchDiscount: 0.5 },
    limits: { minSize: 64, maxSize: 1024, defaultWidth: 512, defaultHeight: 512 },
    routes: [
      { provider: "simulated", model: "sim/image" },
      { provider: "simulated-2", model: "sim/image", baseCostUsd: 0.008 },
      { provider: "replicate", model: "acme/test-image" },
    ],
    alternates: ["sim-image-standard"],
    aliases: ["test-image-old"],
    typicalSeconds: 2,
    timeoutSeconds: 60,
  };
}

function videoModel(name = "test-video"): Record<string, any> {
  return {
    name,
    mediaType: "VIDEO",
    quality: 8,
    pricing: { baseCostUsd: 0.1, perSecond: true },
    limits: {
      minSize: 64,
      maxSize: 1024,
      defaultWidth: 512,
      defaultHeight: 512,
      minDurationSeconds: 1,
      maxDurationSeconds: 8,
      defaultDurationSeconds: 2,
    },
    routes: [{ provider: "simulated", model: "sim/video" }],
    typicalSeconds: 10,
    timeoutSeconds: 300,
  };
}

describe("model catalog in Postgres", () => {
  let env: TestEnv;
  let a: TestServer;
  let b: TestServer;
  let admin: string;
  let partnerKey: string;
  const sockets: WsClient[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    a = await startTestServer(env);
    // A second process on the same database and Redis: an api only, like another replica.
    b = await startTestServer(env, { worker: false });
    admin = await adminKey(a);
    partnerKey = (await partner(a, admin)).key;
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    await b.stop();
    await a.stop();
    await env.cleanup();
  });

  /** Resolves after server's next catalog reload. */
  function nextReload(server: TestServer): Promise<void> {
    const catalog = server.app.services.catalog as PostgresModelCatalog;
    const d = deferred<void>();
    const off = catalog.onReload(() => {
      off();
      d.resolve();
    });
    return d.promise;
  }

  it("is seeded with the models the code defined", async () => {
    const stored = await new CatalogRepository(a.app.db.dataSource).loadAll();
    const byName = (x: { name: string }, y: { name: string }) => x.name.localeCompare(y.name);
    expect(stored.sort(byName)).toEqual([...BUILTIN_MODELS, ...PROVIDER_MODELS].sort(byName));
  });

  it("shows what the domain can serve, with pricing, limits and routes", async () => {
    const res = await gql(a.url, MODELS, { mediaType: "IMAGE" }, partnerKey);
    expect(res.errors).toBeUndefined();
    const names = res.data!.models.map((m: { name: string }) => m.name);
    expect(names).toEqual(["sim-image-fast", "sim-image-pro", "sim-image-standard"]);
    const standard = res.data!.models.find(
      (m: { name: string }) => m.name === "sim-image-standard",
    );
    expect(standard).toMatchObject({
      quality: 7,
      qualityClass: "STANDARD",
      baseCostUsd: 0.025,
      // In-process, the simulated provider is one; simulated-2 and -3 are sim-provider servers.
      providers: ["simulated"],
      deprecated: false,
      available: true,
      pricing: { perMegapixel: true, referenceMegapixels: 1, perSecond: false, batchDiscount: 0.5 },
      limits: { minSize: 64, maxSize: 2048, minDurationSeconds: null },
    });
    expect(standard.routes[0]).toEqual({
      provider: "simulated",
      model: "sim/image",
      baseCostUsd: 0.025,
      batchDiscount: 0.5,
      priceOverride: false,
      configured: true,
    });
  });

  it("keeps models without a configured provider stored, for ADMIN only", async () => {
    const all = await gql(a.url, MODELS, { all: true }, admin);
    expect(all.errors).toBeUndefined();
    const flux = all.data!.models.find((m: { name: string }) => m.name === "flux-dev");
    expect(flux).toMatchObject({ available: false, providers: [], alternates: ["flux-schnell"] });
    expect(flux.routes.map((r: { configured: boolean }) => r.configured)).toEqual([
      false,
      false,
      false,
    ]);
    const gpt = all.data!.models.find((m: { name: string }) => m.name === "gpt-image-1.5");
    expect(gpt.aliases).toEqual(["gpt-image-1", "dall-e-3"]);

    const refused = await gql(a.url, MODELS, { all: true }, partnerKey);
    expect(errorCode(refused)).toBe("FORBIDDEN");
  });

  it("refuses edits from a PARTNER", async () => {
    const upsert = await gql(a.url, UPSERT, { input: imageModel() }, partnerKey);
    expect(errorCode(upsert)).toBe("FORBIDDEN");
    const deprecate = await gql(
      a.url,
      DEPRECATE,
      { name: "sim-image-fast", deprecated: true },
      partnerKey,
    );
    expect(errorCode(deprecate)).toBe("FORBIDDEN");
    const anonymous = await gql(a.url, UPSERT, { input: imageModel() });
    expect(errorCode(anonymous)).toBe("UNAUTHENTICATED");
  });

  it("shows a new model in another process once it is created", async () => {
    const reloaded = nextReload(b);
    const res = await gql(a.url, UPSERT, { input: imageModel() }, admin);
    expect(res.errors).toBeUndefined();
    expect(res.data!.upsertModel).toMatchObject({
      name: "test-image",
      qualityClass: "STANDARD",
      available: true,
      providers: ["simulated"],
      aliases: ["test-image-old"],
    });
    expect(res.data!.upsertModel.routes[1]).toMatchObject({
      provider: "simulated-2",
      baseCostUsd: 0.008,
      priceOverride: true,
      configured: false,
    });
    expect(res.data!.upsertModel.routes[2]).toMatchObject({
      provider: "replicate",
      configured: false,
    });
    // The process that made the edit sees it in its answer's wake; the other one after the notice.
    const here = await gql(a.url, MODELS, { mediaType: "IMAGE" }, partnerKey);
    expect(here.data!.models.map((m: { name: string }) => m.name)).toContain("test-image");
    await reloaded;
    const there = await gql(b.url, MODELS, { mediaType: "IMAGE" }, partnerKey);
    expect(there.data!.models.map((m: { name: string }) => m.name)).toContain("test-image");
    const byAlias = await gql(
      b.url,
      ESTIMATE,
      { input: { userId: "u1", mediaType: "IMAGE", prompt: "x", model: "test-image-old" } },
      partnerKey,
    );
    expect(byAlias.data!.estimateCost).toMatchObject({
      model: "test-image",
      provider: "simulated",
    });
  });

  it("changes prices everywhere when a model is edited", async () => {
    const reloaded = nextReload(b);
    const edited = { ...imageModel(), pricing: { baseCostUsd: 0.02 } };
    const res = await gql(a.url, UPSERT, { input: edited }, admin);
    expect(res.errors).toBeUndefined();
    expect(res.data!.upsertModel.pricing).toEqual({
      baseCostUsd: 0.02,
      perMegapixel: false,
      referenceMegapixels: null,
      perSecond: false,
      batchDiscount: 0,
    });
    await reloaded;
    const estimate = await gql(
      b.url,
      ESTIMATE,
      { input: { userId: "u1", mediaType: "IMAGE", prompt: "x", model: "test-image" } },
      partnerKey,
    );
    expect(estimate.data!.estimateCost).toMatchObject({
      estimatedCostUsd: 0.02,
      breakdown: { baseCostUsd: 0.02, batchDiscount: 0 },
    });
  });

  it("stops choosing a deprecated model but still serves it by name", async () => {
    const reloaded = nextReload(b);
    const res = await gql(a.url, DEPRECATE, { name: "sim-image-fast", deprecated: true }, admin);
    expect(res.data!.deprecateModel).toEqual({ name: "sim-image-fast", deprecated: true });
    await reloaded;
    const chosen = await gql(
      b.url,
      ESTIMATE,
      { input: { userId: "u1", mediaType: "IMAGE", prompt: "x", quality: 1 } },
      partnerKey,
    );
    expect(chosen.data!.estimateCost.model).not.toBe("sim-image-fast");
    const named = await gql(
      b.url,
      ESTIMATE,
      { input: { userId: "u1", mediaType: "IMAGE", prompt: "x", model: "sim-image-fast" } },
      partnerKey,
    );
    expect(named.data!.estimateCost.model).toBe("sim-image-fast");
    const back = await gql(a.url, DEPRECATE, { name: "sim-image-fast", deprecated: false }, admin);
    expect(back.data!.deprecateModel.deprecated).toBe(false);
  });

  it("charges the price of the provider that served the attempt", async () => {
    const res = await gql(
      a.url,
      UPSERT,
      {
        input: {
          ...imageModel("priced-image"),
          aliases: [],
          pricing: { baseCostUsd: 0.01 },
          routes: [{ provider: "simulated", model: "sim/image", baseCostUsd: 0.004 }],
        },
      },
      admin,
    );
    expect(res.errors).toBeUndefined();
    const ws = wsClient(a.url, partnerKey);
    sockets.push(ws);
    const g = await gql(
      a.url,
      GENERATE,
      {
        input: {
          userId: "u1",
          mediaType: "IMAGE",
          prompt: "a priced lighthouse",
          model: "priced-image",
          cache: "BYPASS",
        },
      },
      partnerKey,
    );
    expect(g.errors).toBeUndefined();
    expect(g.data!.generate.estimatedCostUsd).toBe(0.004);
    const events = ws.subscribe(WATCH, { id: g.data!.generate.id });
    const done = await events.until((m) => m.generationUpdated.generation.status === "SUCCEEDED");
    expect(done.generationUpdated.generation).toMatchObject({
      model: "priced-image",
      provider: "simulated",
      costUsd: 0.004,
    });
  });

  it("keeps stored generations readable after their model changes", async () => {
    const g = await gql(
      a.url,
      GENERATE,
      { input: { userId: "u1", mediaType: "IMAGE", prompt: "kept", model: "test-image" } },
      partnerKey,
    );
    expect(g.errors).toBeUndefined();
    await gql(a.url, UPSERT, { input: { ...imageModel(), quality: 3 } }, admin);
    await gql(a.url, DEPRECATE, { name: "test-image", deprecated: true }, admin);
    const read = await gql(
      a.url,
      `query($id: ID!) { generation(id: $id) { id model } }`,
      { id: g.data!.generate.id },
      partnerKey,
    );
    expect(read.data!.generation).toEqual({ id: g.data!.generate.id, model: "test-image" });
  });

  describe("refuses bad input, naming the field", () => {
    const spoil = (patch: (m: Record<string, any>) => void, base = imageModel) => {
      const m = base();
      patch(m);
      return m;
    };
    const cases: Array<[string, Record<string, any>]> = [
      ["name", spoil((m) => (m.name = ""))],
      ["name", spoil((m) => (m.name = "has space"))],
      ["name", spoil((m) => (m.name = "x".repeat(101)))],
      ["name", spoil((m) => (m.name = "gpt-image-1"))], // another model's alias
      ["mediaType", spoil((m) => (m.name = "sim-video"))], // an existing video model
      ["quality", spoil((m) => (m.quality = 0))],
      ["quality", spoil((m) => (m.quality = 11))],
      ["pricing.baseCostUsd", spoil((m) => (m.pricing.baseCostUsd = -1))],
      ["pricing.baseCostUsd", spoil((m) => (m.pricing.baseCostUsd = 5000))],
      ["pricing.baseCostUsd", spoil((m) => (m.pricing.baseCostUsd = 0.0000001))],
      ["pricing.perMegapixel", spoil((m) => (m.pricing.perMegapixel = true), audioModel)],
      ["pricing.referenceMegapixels", spoil((m) => (m.pricing.referenceMegapixels = 0))],
      [
        "pricing.referenceMegapixels",
        spoil((m) => {
          m.pricing.perMegapixel = false;
          m.pricing.referenceMegapixels = 1;
        }),
      ],
      ["pricing.perSecond", spoil((m) => (m.pricing.perSecond = true))],
      ["pricing.batchDiscount", spoil((m) => (m.pricing.batchDiscount = 1))],
      ["pricing.batchDiscount", spoil((m) => (m.pricing.batchDiscount = -0.1))],
      ["limits.minSize", spoil((m) => (m.limits.minSize = 0))],
      ["limits.minSize", spoil((m) => delete m.limits.minSize)],
      ["limits.maxSize", spoil((m) => (m.limits.maxSize = 9000))],
      ["limits.maxSize", spoil((m) => (m.limits.maxSize = 32))],
      ["limits.defaultWidth", spoil((m) => (m.limits.defaultWidth = 2048))],
      ["limits.defaultHeight", spoil((m) => (m.limits.defaultHeight = 100))],
      ["limits.minDurationSeconds", spoil((m) => (m.limits.minDurationSeconds = 1))],
      ["limits.minSize", spoil((m) => (m.limits.minSize = 64), audioModel)],
      ["limits.minDurationSeconds", spoil((m) => (m.limits.minDurationSeconds = 0), videoModel)],
      ["limits.maxDurationSeconds", spoil((m) => (m.limits.maxDurationSeconds = 0.5), videoModel)],
      ["limits.maxDurationSeconds", spoil((m) => delete m.limits.maxDurationSeconds, videoModel)],
      [
        "limits.defaultDurationSeconds",
        spoil((m) => (m.limits.defaultDurationSeconds = 9), videoModel),
      ],
      ["routes", spoil((m) => (m.routes = []))],
      ["routes[0].provider", spoil((m) => (m.routes[0].provider = "nowhere"))],
      ["routes[1].provider", spoil((m) => (m.routes[1].provider = "simulated"))],
      ["routes[0].model", spoil((m) => (m.routes[0].model = ""))],
      ["routes[0].model", spoil((m) => (m.routes[0].model = "a\nb"))],
      ["routes[1].baseCostUsd", spoil((m) => (m.routes[1].baseCostUsd = -0.5))],
      ["routes[0].batchDiscount", spoil((m) => (m.routes[0].batchDiscount = 2))],
      ["alternates[0]", spoil((m) => (m.alternates = ["no-such-model"]))],
      ["alternates[0]", spoil((m) => (m.alternates = ["sim-video"]))],
      ["alternates[0]", spoil((m) => (m.alternates = ["test-image"]))],
      ["alternates[1]", spoil((m) => (m.alternates = ["flux-dev", "flux-dev"]))],
      ["alternates", spoil((m) => (m.alternates = ["a", "b", "c", "d", "e", "f"]))],
      ["aliases[0]", spoil((m) => (m.aliases = ["sim-image-pro"]))],
      ["aliases[0]", spoil((m) => (m.aliases = ["dall-e-3"]))],
      ["aliases[0]", spoil((m) => (m.aliases = ["test-image"]))],
      ["aliases[0]", spoil((m) => (m.aliases = ["bad alias"]))],
      ["typicalSeconds", spoil((m) => (m.typicalSeconds = 0))],
      ["timeoutSeconds", spoil((m) => (m.timeoutSeconds = 0))],
      ["timeoutSeconds", spoil((m) => (m.timeoutSeconds = 1))], // below typicalSeconds
      ["timeoutSeconds", spoil((m) => (m.timeoutSeconds = 100_000))],
    ];

    it.each(cases)("%s", async (field, input) => {
      const res = await gql(a.url, UPSERT, { input }, admin);
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe(field);
    });

    it("deprecateModel: name", async () => {
      const res = await gql(a.url, DEPRECATE, { name: "no-such-model", deprecated: true }, admin);
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("name");
    });

    it("stores nothing that was refused", async () => {
      const all = await gql(a.url, MODELS, { all: true }, admin);
      const names = all.data!.models.map((m: { name: string }) => m.name);
      expect(names).not.toContain("no-such-model");
      expect(names).not.toContain("has space");
    });
  });
});

function audioModel(): Record<string, any> {
  return {
    name: "test-audio",
    mediaType: "AUDIO",
    quality: 5,
    pricing: { baseCostUsd: 0.001, perSecond: true },
    limits: { minDurationSeconds: 1, maxDurationSeconds: 30, defaultDurationSeconds: 5 },
    routes: [{ provider: "simulated", model: "sim/audio" }],
    typicalSeconds: 3,
    timeoutSeconds: 60,
  };
}
