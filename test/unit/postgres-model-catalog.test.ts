import { createLogger } from "../../src/common/logger";
import { deferred } from "../../src/common/deferred";
import type { CatalogRepository } from "../../src/cost/catalog.repository";
import {
  BUILTIN_MODELS,
  PROVIDER_MODELS,
  type ModelDefinition,
} from "../../src/cost/model-catalog";
import { PostgresModelCatalog } from "../../src/cost/postgres-model-catalog";
import { InProcessPubSub } from "../../src/infra/pubsub/in-process.pubsub";
import { Topic } from "../../src/infra/pubsub/pubsub";

/** A repository whose contents the test sets, and whose next load may fail. */
function fakeRepo(models: ModelDefinition[]) {
  const repo = {
    models,
    fail: false,
    loads: 0,
    loadAll: async () => {
      repo.loads++;
      if (repo.fail) throw new Error("database unavailable");
      return repo.models;
    },
  };
  return repo;
}

describe("PostgresModelCatalog", () => {
  const logger = createLogger("silent");
  const pubsub = new InProcessPubSub();
  const catalogs: PostgresModelCatalog[] = [];

  function make(repo: ReturnType<typeof fakeRepo>, reloadIntervalMs = 60_000) {
    const c = new PostgresModelCatalog(
      repo as unknown as CatalogRepository,
      pubsub,
      { configured: (p) => p.startsWith("simulated") || p === "openai", reloadIntervalMs },
      logger,
    );
    catalogs.push(c);
    return c;
  }

  afterAll(async () => {
    await Promise.all(catalogs.map((c) => c.stop()));
    await pubsub.close();
  });

  it("shows only models with a configured provider, with only those routes", async () => {
    const c = make(fakeRepo([...BUILTIN_MODELS, ...PROVIDER_MODELS]));
    await c.start();
    expect(c.get("flux-dev")).toBeUndefined();
    expect(c.get("dall-e-3")?.name).toBe("gpt-image-1.5");
    expect(c.get("gpt-image-1.5")?.routes.map((r) => r.provider)).toEqual(["openai"]);
    expect(c.stored().map((m) => m.name)).toContain("flux-dev");
  });

  it("reloads on a change notice from another process", async () => {
    const repo = fakeRepo(BUILTIN_MODELS);
    const c = make(repo);
    await c.start();
    repo.models = BUILTIN_MODELS.filter((m) => m.name !== "sim-video");
    const reloaded = deferred<void>();
    c.onReload(() => reloaded.resolve());
    await pubsub.publish(Topic.Catalog, "all", { model: "sim-video", at: "" });
    await reloaded.promise;
    expect(c.get("sim-video")).toBeUndefined();
  });

  it("keeps the last catalog when a reload fails, and reloads on its timer", async () => {
    const repo = fakeRepo(BUILTIN_MODELS);
    const c = make(repo, 20);
    await c.start();
    repo.fail = true;
    await expect(c.reload()).rejects.toThrow("database unavailable");
    expect(c.get("sim-image-fast")).toBeDefined();
    repo.fail = false;
    repo.models = [];
    const reloaded = deferred<void>();
    c.onReload(() => reloaded.resolve());
    await reloaded.promise;
    expect(c.get("sim-image-fast")).toBeUndefined();
  });

  it("serves reloads asked for during one with a single further load", async () => {
    const repo = fakeRepo(BUILTIN_MODELS);
    const c = make(repo);
    await c.start();
    const before = repo.loads;
    await Promise.all([c.reload(), c.reload(), c.reload(), c.reload()]);
    expect(repo.loads - before).toBeLessThanOrEqual(2);
  });
});
