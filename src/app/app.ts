import path from "node:path";
import type { RedisOptions as BullRedisOptions } from "bullmq";
import type Redis from "ioredis";
import type { Config } from "../config";
import type { Logger } from "../common/logger";
import { ApiKeyRepository } from "../auth/api-key.repository";
import { AuthService } from "../auth/auth.service";
import { StaticModelCatalog } from "../cost/model-catalog";
import { GenerationEvents } from "../generation/generation.events";
import { GenerationProcessor } from "../generation/generation.processor";
import { GenerationQueue } from "../generation/generation.queue";
import { GenerationRepository } from "../generation/generation.repository";
import { GenerationService } from "../generation/generation.service";
import { GenerationSubscriptions } from "../generation/generation.subscriptions";
import { OutputStoreService } from "../generation/output-store.service";
import { Reconciler } from "../generation/reconciler";
import { openDatabase, type Database } from "../infra/data-source";
import { migrate } from "../infra/migrate";
import { InProcessPubSub } from "../infra/pubsub/in-process.pubsub";
import type { PubSub } from "../infra/pubsub/pubsub";
import { RedisPubSub } from "../infra/pubsub/redis.pubsub";
import { BullMqDriver } from "../infra/queue/bullmq.driver";
import { InProcessQueueDriver } from "../infra/queue/in-process.driver";
import type { QueueConsumer, QueueDriver } from "../infra/queue/queue.driver";
import { createRedis, redisOptions } from "../infra/redis";
import { ProviderRegistry } from "../providers";
import { SimulatedProviderAdapter } from "../providers/simulated/simulated.adapter";
import { LocalObjectStore, OutputUrlSigner, type ObjectStore } from "../storage/object-store";
import { embeddedSecret } from "./secret";
import type { Services } from "./services";

export interface AppRoles {
  api: boolean;
  worker: boolean;
}

/** Everything one gengate process runs, built from config; `stop()` takes it down in order. */
export interface App {
  config: Config;
  logger: Logger;
  services: Services;
  db: Database;
  objects: ObjectStore;
  queue: QueueDriver;
  reconciler: Reconciler;
  /** Checks the backing services, for /readyz. */
  ready(): Promise<{ postgres: boolean; redis: boolean | null }>;
  stop(): Promise<void>;
}

export async function createApp(config: Config, roles: AppRoles, logger: Logger): Promise<App> {
  const db = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    poolSize: config.DB_POOL_SIZE,
  });
  const applied = await migrate(db.dataSource);
  if (applied.length) logger.info({ applied }, "migrations applied");

  const redisClients: Redis[] = [];
  let queue: QueueDriver;
  let pubsub: PubSub;
  if (config.REDIS_URL) {
    const publisher = createRedis(config.REDIS_URL, "gengate-pub");
    const subscriber = createRedis(config.REDIS_URL, "gengate-sub");
    const probe = createRedis(config.REDIS_URL, "gengate-probe");
    redisClients.push(probe);
    for (const c of [publisher, subscriber, probe]) {
      c.on("error", (err) => logger.warn({ err: err.message }, "redis connection error"));
    }
    pubsub = new RedisPubSub(publisher, subscriber, config.REDIS_PREFIX);
    queue = new BullMqDriver({
      connection: redisOptions(config.REDIS_URL) as BullRedisOptions,
      prefix: config.REDIS_PREFIX,
      queueName: "generations",
      logger,
    });
  } else {
    pubsub = new InProcessPubSub();
    queue = new InProcessQueueDriver(logger);
  }

  const secret = config.TOKEN_SECRET ?? embeddedSecret(config.DATA_DIR);
  const objects = new LocalObjectStore(path.resolve(config.DATA_DIR, "objects"));
  const urlSigner = new OutputUrlSigner(config.PUBLIC_URL, secret, config.OUTPUT_URL_TTL_SECONDS);
  const catalog = new StaticModelCatalog();
  const providers = new ProviderRegistry([
    new SimulatedProviderAdapter({
      latencyMs: config.SIM_LATENCY_MS,
      latencyJitter: config.SIM_LATENCY_JITTER,
      failureRate: config.SIM_FAILURE_RATE,
      progressSteps: config.SIM_PROGRESS_STEPS,
    }),
  ]);

  const repo = new GenerationRepository(db.dataSource);
  const events = new GenerationEvents(pubsub);
  const generationQueue = new GenerationQueue(queue);
  const auth = new AuthService(new ApiKeyRepository(db.dataSource), secret);
  if (db.embedded && roles.api) {
    // With nothing configured there is no other way to get in: print a first key, once.
    const first = await auth.bootstrapAdminKey();
    if (first) {
      logger.warn(
        { apiKey: first.key, keyId: first.apiKey.id },
        "first start: created an ADMIN key (shown once; `gengate create-key` makes more)",
      );
    }
  }
  const generations = new GenerationService(
    repo,
    generationQueue,
    events,
    catalog,
    providers,
    logger,
  );
  const subscriptions = new GenerationSubscriptions(repo, pubsub);
  const reconciler = new Reconciler(
    repo,
    generationQueue,
    {
      intervalMs: config.RECONCILE_INTERVAL_SECONDS * 1000,
      staleSeconds: config.RECONCILE_STALE_SECONDS,
      queueStartsEmpty: !config.REDIS_URL,
    },
    logger.child({ component: "reconciler" }),
  );

  let consumer: QueueConsumer | undefined;
  if (roles.worker) {
    const processor = new GenerationProcessor(
      repo,
      generationQueue,
      events,
      catalog,
      providers,
      new OutputStoreService(objects),
      {
        maxAttempts: 3,
        pollMinMs: config.POLL_MIN_MS,
        pollMaxMs: config.POLL_MAX_MS,
        staleMs: config.RECONCILE_STALE_SECONDS * 1000,
      },
      logger.child({ component: "worker" }),
    );
    consumer = queue.consume(processor.handle, {
      concurrency: config.WORKER_CONCURRENCY,
      lockMs: config.QUEUE_LOCK_MS,
    });
    reconciler.start();
  }

  let stopped: Promise<void> | undefined;
  return {
    config,
    logger,
    services: { auth, generations, subscriptions, catalog, urlSigner },
    db,
    objects,
    queue,
    reconciler,
    async ready() {
      const postgres = await db.dataSource
        .query("SELECT 1")
        .then(() => true)
        .catch(() => false);
      const probe = redisClients[0];
      const redis = probe
        ? await Promise.race([
            probe.ping().then(
              () => true,
              () => false,
            ),
            new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000).unref()),
          ])
        : null;
      return { postgres, redis };
    },
    stop() {
      stopped ??= (async () => {
        await reconciler.stop();
        // Active steps finish (they are short); anything not started stays in the queue.
        await consumer?.close();
        await queue.close();
        await pubsub.close();
        await Promise.all(redisClients.map((c) => c.quit().catch(() => c.disconnect())));
        await db.close();
      })();
      return stopped;
    },
  };
}
