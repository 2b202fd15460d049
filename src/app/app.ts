import path from "node:path";
import type { RedisOptions as BullRedisOptions } from "bullmq";
import type Redis from "ioredis";
import type { Config } from "../config";
import type { Logger } from "../common/logger";
import { ApiKeyRepository } from "../auth/api-key.repository";
import { ApiKeyCache } from "../auth/api-key.cache";
import { AuthService } from "../auth/auth.service";
import { CatalogRepository } from "../cost/catalog.repository";
import { CatalogService } from "../cost/catalog.service";
import { PostgresModelCatalog } from "../cost/postgres-model-catalog";
import { GenerationEvents } from "../generation/generation.events";
import { GenerationProcessor } from "../generation/generation.processor";
import { GenerationQueue } from "../generation/generation.queue";
import { GenerationRepository } from "../generation/generation.repository";
import { GenerationService, type CallbackGate } from "../generation/generation.service";
import {
  CallbackRefusedError,
  CallbackRepository,
  CallbackSecretsService,
  CallbackService,
  validateCallbackUrl,
} from "../callbacks";
import { BadInputError } from "../common/errors";
import { GenerationSubscriptions } from "../generation/generation.subscriptions";
import { OutputStoreService } from "../generation/output-store.service";
import { createQualityGate, PassRateRepository, PassRateTracker } from "../quality";
import { ProviderWebhookService } from "../generation/provider-webhooks.service";
import { Reconciler } from "../generation/reconciler";
import { BatchProcessor } from "../generation/batch.processor";
import { BatchRepository } from "../generation/batch.repository";
import { InMemoryKeyValueStore } from "../infra/kv/in-memory.kv";
import type { KeyValueStore } from "../infra/kv/key-value";
import { RedisKeyValueStore } from "../infra/kv/redis.kv";
import { AdmissionControl } from "../routing/admission";
import type { CircuitBreaker } from "../routing/circuit-breaker";
import { InMemoryCircuitBreaker } from "../routing/in-memory-circuit-breaker";
import { InMemoryTokenBucket } from "../routing/in-memory-rate-limiter";
import { ModelAvailability } from "../routing/model-availability";
import { ProviderHealthService } from "../routing/provider-health.service";
import type { RateLimiter } from "../routing/rate-limiter";
import { RedisCircuitBreaker } from "../routing/redis-circuit-breaker";
import { RedisTokenBucket } from "../routing/redis-rate-limiter";
import { openDatabase, type Database } from "../infra/data-source";
import { migrate } from "../infra/migrate";
import { InProcessPubSub } from "../infra/pubsub/in-process.pubsub";
import { Topic, type PubSub } from "../infra/pubsub/pubsub";
import { RedisPubSub } from "../infra/pubsub/redis.pubsub";
import { BullMqDriver } from "../infra/queue/bullmq.driver";
import { InProcessQueueDriver } from "../infra/queue/in-process.driver";
import {
  PRIORITY_RANK,
  type Job,
  type QueueConsumer,
  type QueueDriver,
} from "../infra/queue/queue.driver";
import { createRedis, redisOptions, type RedisTarget } from "../infra/redis";
import { createProviderRegistry } from "../providers";
import { LocalObjectStore, OutputUrlSigner, type ObjectStore } from "../storage/object-store";
import { S3ObjectStore } from "../storage/s3-object-store";
import { embeddedSecret } from "./secret";
import type { Services } from "./services";
import { CacheAdminService } from "../cache/cache-admin.service";
import { CacheService } from "../cache/cache.service";
import { createEmbedder } from "../cache/embedder.factory";
import { SemanticCacheRepository } from "../cache/semantic-cache.repository";
import { UsageRepository } from "../cost/usage.repository";
import { UsageService } from "../cost/usage.service";
import { OperatorStatsRepository } from "../observability/operator-stats.repository";
import { OperatorStatsService } from "../observability/operator-stats.service";
import { BudgetRepository } from "../cost/budget.repository";
import { BudgetService } from "../cost/budget.service";
import { AlertService } from "../observability/alert.service";
import type { BaselineStore } from "../observability/anomaly.baseline";
import {
  AnomalyDetector,
  NO_ANOMALY_DETECTION,
  observingCacheLookups,
  type AnomalyObserver,
} from "../observability/anomaly.detector";
import { InMemoryBaselineStore } from "../observability/anomaly.memory-store";
import { RedisBaselineStore } from "../observability/anomaly.redis-store";
import { Metrics } from "../observability";
import { instrumentQueue, traceProviders } from "../observability/instrumentation";
import { periodOf } from "../cost/budget.policy";

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
  metrics: Metrics;
  queue: QueueDriver;
  reconciler: Reconciler;
  webhooks: ProviderWebhookService;
  /** Checks the backing services, for /readyz. */
  ready(): Promise<{ postgres: boolean; redis: boolean | null }>;
  stop(): Promise<void>;
}

export async function createApp(config: Config, roles: AppRoles, logger: Logger): Promise<App> {
  const db = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    poolSize: config.DB_POOL_SIZE,
    preparedStatements: config.DB_PREPARED_STATEMENTS,
  });
  const applied = await migrate(db.dataSource);
  if (applied.length) logger.info({ applied }, "migrations applied");

  const metrics = new Metrics({
    onCollectionErrors: (errors) => logger.warn({ errors }, "metrics collection reported errors"),
  });
  const redisClients: Redis[] = [];
  let queue: QueueDriver;
  let pubsub: PubSub;
  let kv: KeyValueStore;
  let breaker: CircuitBreaker;
  let limiter: RateLimiter;
  let baselines: BaselineStore;
  const circuit = {
    windowMs: config.CIRCUIT_WINDOW_SECONDS * 1000,
    minRequests: config.CIRCUIT_MIN_REQUESTS,
    failureThreshold: config.CIRCUIT_FAILURE_THRESHOLD,
    coolDownMs: config.CIRCUIT_COOLDOWN_SECONDS * 1000,
  };
  const bucket = {
    capacity: config.RATE_LIMIT_BURST,
    refillPerSecond: config.RATE_LIMIT_PER_SECOND,
  };
  if (config.REDIS_URL) {
    const target: RedisTarget = {
      url: config.REDIS_URL,
      sentinels: config.REDIS_SENTINELS,
      sentinelName: config.REDIS_SENTINEL_NAME,
      sentinelPassword: config.REDIS_SENTINEL_PASSWORD,
    };
    const publisher = createRedis(target, "gengate-pub", { pipelined: true });
    const subscriber = createRedis(target, "gengate-sub");
    const probe = createRedis(target, "gengate-probe", { pipelined: true });
    redisClients.push(probe);
    for (const c of [publisher, subscriber, probe]) {
      c.on("error", (err) => logger.warn({ err: err.message }, "redis connection error"));
    }
    pubsub = new RedisPubSub(publisher, subscriber, config.REDIS_PREFIX);
    kv = new RedisKeyValueStore(probe, config.REDIS_PREFIX);
    breaker = new RedisCircuitBreaker(probe, config.REDIS_PREFIX, circuit);
    limiter = new RedisTokenBucket(probe, config.REDIS_PREFIX, bucket);
    baselines = new RedisBaselineStore(probe, config.REDIS_PREFIX);
    queue = new BullMqDriver({
      connection: redisOptions(target) as BullRedisOptions,
      prefix: config.REDIS_PREFIX,
      queueName: "generations",
      logger,
    });
  } else {
    pubsub = new InProcessPubSub();
    kv = new InMemoryKeyValueStore();
    breaker = new InMemoryCircuitBreaker(circuit);
    limiter = new InMemoryTokenBucket(bucket);
    baselines = new InMemoryBaselineStore();
    queue = new InProcessQueueDriver(logger);
  }
  queue = instrumentQueue(
    queue,
    metrics,
    // Only when traces are exported: otherwise every untraced step would cost a read.
    config.OTEL_EXPORTER_OTLP_ENDPOINT ? (id) => repo.traceContext(id) : undefined,
  );

  const secret = config.TOKEN_SECRET ?? embeddedSecret(config.DATA_DIR);
  const objects: ObjectStore & { close?(): void } = config.S3_BUCKET
    ? new S3ObjectStore({
        bucket: config.S3_BUCKET,
        region: config.S3_REGION,
        endpoint: config.S3_ENDPOINT,
        forcePathStyle: config.S3_FORCE_PATH_STYLE,
        accessKeyId: config.S3_ACCESS_KEY_ID,
        secretAccessKey: config.S3_SECRET_ACCESS_KEY,
        prefix: config.S3_PREFIX,
      })
    : new LocalObjectStore(path.resolve(config.DATA_DIR, "objects"));
  const urlSigner = new OutputUrlSigner(config.PUBLIC_URL, secret, config.OUTPUT_URL_TTL_SECONDS);
  const providers = traceProviders(createProviderRegistry(config));
  const outputUrl = (key: string): Promise<string> =>
    objects.signedUrl
      ? objects.signedUrl(key, config.OUTPUT_URL_TTL_SECONDS)
      : Promise.resolve(urlSigner.sign(key));
  // The operators' catalog from Postgres; only models with at least one configured provider
  // can be chosen or named. Every process reloads it when any of them edits it.
  const catalogRepo = new CatalogRepository(db.dataSource);
  const catalog = new PostgresModelCatalog(
    catalogRepo,
    pubsub,
    {
      configured: (name) => Boolean(providers.get(name)),
      timeoutCapSeconds: config.PROVIDER_TIMEOUT_SECONDS,
      reloadIntervalMs: config.CATALOG_RELOAD_SECONDS * 1000,
    },
    logger.child({ component: "catalog" }),
  );
  await catalog.start();

  const budgets = new BudgetRepository(db.dataSource, {
    FREE: config.BUDGET_FREE_USD,
    PRO: config.BUDGET_PRO_USD,
    ENTERPRISE: config.BUDGET_ENTERPRISE_USD,
  });
  const repo = new GenerationRepository(db.dataSource, budgets, config.DEFAULT_TIER);
  const alerts = new AlertService(
    db.dataSource,
    pubsub,
    queue,
    { allowPrivate: config.CALLBACKS_ALLOW_PRIVATE, operatorWebhookUrl: config.ALERT_WEBHOOK_URL },
    logger.child({ component: "alerts" }),
  );
  const anomalies: AnomalyObserver = config.ANOMALY_DETECTION
    ? new AnomalyDetector(
        baselines,
        alerts,
        {
          warningSigma: config.ANOMALY_WARNING_SIGMA,
          criticalSigma: config.ANOMALY_CRITICAL_SIGMA,
          alpha: config.ANOMALY_EWMA_ALPHA,
          warmupSamples: config.ANOMALY_WARMUP_SAMPLES,
          cooldownMs: config.ANOMALY_COOLDOWN_SECONDS * 1000,
          errorWindow: config.ANOMALY_ERROR_WINDOW,
          cacheWindow: config.ANOMALY_CACHE_WINDOW,
        },
        logger.child({ component: "anomalies" }),
      )
    : NO_ANOMALY_DETECTION;
  const events = new GenerationEvents(pubsub);
  const generationQueue = new GenerationQueue(queue);
  const auth = new AuthService(
    new ApiKeyRepository(db.dataSource),
    secret,
    new ApiKeyCache(),
    (keyId) => pubsub.publish(Topic.ApiKeyRevoked, "all", { keyId }),
  );
  // Every process forgets a key revoked in any of them (subscribed before serving requests).
  const revocations = pubsub.subscribe(Topic.ApiKeyRevoked, "all");
  await revocations.ready;
  void (async () => {
    for await (const { keyId } of revocations) auth.forgetKey(keyId);
  })();
  if (db.embedded && roles.api) {
    // With nothing configured there is no other way to get in: print a first key, once.
    const first = await auth.bootstrapAdminKey();
    if (first) {
      // The key itself goes to the terminal, never into the structured log (which redacts
      // keys anyway): whoever started the program reads it once.
      logger.warn(
        { keyId: first.apiKey.id },
        "first start: created an ADMIN key (printed on stderr once; `gengate create-key` makes more)",
      );
      process.stderr.write(`gengate: first ADMIN key (shown once): ${first.key}\n`);
    }
  }
  const callbacks = new CallbackService(
    new CallbackRepository(db.dataSource),
    queue,
    repo,
    (g) =>
      Promise.all(g.outputs.map(async ({ key, ...o }) => ({ ...o, url: await outputUrl(key) }))),
    logger.child({ component: "callbacks" }),
    { allowPrivate: config.CALLBACKS_ALLOW_PRIVATE },
  );
  const callbackGate: CallbackGate = {
    check: async (url) => {
      try {
        await validateCallbackUrl(url, { allowPrivate: config.CALLBACKS_ALLOW_PRIVATE });
      } catch (err) {
        if (err instanceof CallbackRefusedError)
          throw new BadInputError("callbackUrl", err.message);
        throw err;
      }
    },
    notify: (g, event) => callbacks.notify(g, event),
  };
  const embedder = createEmbedder(config);
  const semanticRepo = new SemanticCacheRepository(db.dataSource);
  if (config.SEMANTIC_CACHE) await semanticRepo.ensureIndex(embedder.id, embedder.dimensions);
  const cache = new CacheService(
    kv,
    config.SEMANTIC_CACHE ? { repo: semanticRepo, embedder } : null,
    {
      // A hit shares its source's stored objects: it may not be served once they are gone.
      ttlMs: Math.min(
        config.CACHE_TTL_SECONDS * 1000,
        (config.OUTPUT_RETENTION_HOURS ?? Infinity) * 3_600_000,
      ),
      semanticThreshold: config.SEMANTIC_CACHE_THRESHOLD,
      semanticEnabled: config.SEMANTIC_CACHE,
    },
    logger.child({ component: "cache" }),
    observingCacheLookups(metrics, anomalies),
  );
  // Selection ranks by cost per accepted output once a model has enough judged attempts.
  const passRates = new PassRateTracker(
    new PassRateRepository(db.dataSource),
    {
      windowHours: config.QUALITY_PASS_RATE_WINDOW_HOURS,
      minObservations: config.QUALITY_PASS_RATE_MIN_OBSERVATIONS,
    },
    logger.child({ component: "quality" }),
  );
  if (roles.api) await passRates.start();
  const generations = new GenerationService(
    repo,
    generationQueue,
    events,
    catalog,
    providers,
    callbackGate,
    new AdmissionControl(limiter, (priority) => repo.countQueued(priority), {
      maxQueuedPerPriority: config.MAX_QUEUED_PER_PRIORITY,
    }),
    cache,
    metrics,
    alerts,
    {
      tierOf: (accountId, userId) => budgets.tierOf(accountId, userId),
      defaultTier: config.DEFAULT_TIER,
    },
    logger,
    passRates,
  );
  const providerHealth = new ProviderHealthService(breaker, providers, pubsub);
  if (roles.api) {
    // Service-wide values, the same from every process: exported by api processes only.
    metrics.watchGlobal({
      queueDepth: async () => {
        const c = await queue.counts();
        return {
          ...c,
          byPriority: {
            INTERACTIVE: c.byPriority[PRIORITY_RANK.INTERACTIVE] ?? 0,
            STANDARD: c.byPriority[PRIORITY_RANK.STANDARD] ?? 0,
            BATCH: c.byPriority[PRIORITY_RANK.BATCH] ?? 0,
          },
        };
      },
      circuits: () =>
        Promise.all(
          providers.names().map(async (provider) => ({
            provider,
            open: (await breaker.health(provider)).circuit === "OPEN",
          })),
        ),
      budgetRemaining: (limit) => budgets.remainingByAccount(periodOf(new Date()), limit),
    });
  }
  const subscriptions = new GenerationSubscriptions(repo, pubsub);
  const webhooks = new ProviderWebhookService(
    providers,
    kv,
    repo,
    generationQueue,
    events,
    logger.child({ component: "webhooks" }),
  );
  /** Built with the worker; the reconciler runs only there. */
  let batches: BatchProcessor | undefined;
  const reconciler = new Reconciler(
    repo,
    generationQueue,
    {
      intervalMs: config.RECONCILE_INTERVAL_SECONDS * 1000,
      staleSeconds: config.RECONCILE_STALE_SECONDS,
      queueStartsEmpty: !config.REDIS_URL,
    },
    logger.child({ component: "reconciler" }),
    callbacks,
    cache,
    { reconcile: () => batches?.reconcile() ?? Promise.resolve(0) },
    new UsageRepository(db.dataSource),
  );

  let consumer: QueueConsumer | undefined;
  if (roles.worker) {
    const availability = new ModelAvailability(kv);
    const processor = new GenerationProcessor(
      repo,
      generationQueue,
      events,
      catalog,
      providers,
      new OutputStoreService(objects),
      callbacks,
      breaker,
      availability,
      providerHealth,
      cache,
      alerts,
      anomalies,
      {
        maxAttempts: config.MAX_ATTEMPTS,
        maxTotalMs: config.MAX_GENERATION_SECONDS * 1000,
        pollMinMs: config.POLL_MIN_MS,
        pollMaxMs: config.POLL_MAX_MS,
        staleMs: config.RECONCILE_STALE_SECONDS * 1000,
        webhookBaseUrl: config.WEBHOOK_BASE_URL,
        webhookBackstopMs: config.WEBHOOK_BACKSTOP_POLL_MS,
      },
      logger.child({ component: "worker" }),
      metrics,
      createQualityGate(config, logger.child({ component: "quality" })),
    );
    const batchProcessor = new BatchProcessor(
      new BatchRepository(db.dataSource),
      generationQueue,
      events,
      catalog,
      providers,
      breaker,
      availability,
      processor,
      {
        batchSize: config.BATCH_SIZE,
        timeoutSeconds: config.BATCH_TIMEOUT_SECONDS,
        pollMinMs: config.POLL_MIN_MS,
        pollMaxMs: config.POLL_MAX_MS,
        staleSeconds: config.RECONCILE_STALE_SECONDS,
        maxWaitMs: config.MAX_GENERATION_SECONDS * 1000,
      },
      logger.child({ component: "batches" }),
    );
    batches = batchProcessor;
    const handle = (job: Job) =>
      BatchProcessor.JOBS.has(job.name) ? batchProcessor.handle(job) : processor.handle(job);
    consumer = queue.consume(handle, {
      concurrency: config.WORKER_CONCURRENCY,
      lockMs: config.QUEUE_LOCK_MS,
    });
    reconciler.start();
  }

  let stopped: Promise<void> | undefined;
  return {
    config,
    logger,
    services: {
      auth,
      generations,
      subscriptions,
      catalog,
      catalogAdmin: new CatalogService(catalogRepo, catalog),
      urlSigner,
      outputUrl,
      callbacks: new CallbackSecretsService(callbacks),
      providerHealth,
      usage: new UsageService(new UsageRepository(db.dataSource)),
      operatorStats: new OperatorStatsService(new OperatorStatsRepository(db.dataSource)),
      cacheAdmin: new CacheAdminService(db.dataSource, repo, cache),
      budgets: new BudgetService(budgets, config.DEFAULT_TIER),
      alerts,
    },
    db,
    objects,
    metrics,
    queue,
    reconciler,
    webhooks,
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
        passRates.stop();
        // Active steps finish (they are short); anything not started stays in the queue.
        await consumer?.close();
        await queue.close();
        await catalog.stop();
        await revocations.return();
        await pubsub.close();
        await Promise.all(redisClients.map((c) => c.quit().catch(() => c.disconnect())));
        await db.close();
        objects.close?.();
        await metrics.shutdown();
      })();
      return stopped;
    },
  };
}
