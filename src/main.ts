#!/usr/bin/env node
import "reflect-metadata";
import { parseArgs } from "node:util";
import { createApp, type App } from "./app/app";
import { createLogger, type Logger } from "./common/logger";
import { ConfigError, loadConfig, type Config } from "./config";
import { buildGraphQLSchema, printGraphQLSchema } from "./graphql/schema";
import { startHttpServer, type HttpServer } from "./http/server";
import { metricsPortFor, startMetricsServer, type MetricsServer } from "./http/metrics-server";
import { startTracing } from "./observability/tracing";
import { openDatabase } from "./infra/data-source";
import { migrate } from "./infra/migrate";
import { AuthService } from "./auth/auth.service";
import { ApiKeyRepository } from "./auth/api-key.repository";
import { embeddedSecret } from "./app/secret";
import { startSimServer } from "./providers/simulated/sim-server";

const USAGE = `usage: gengate <command>

commands:
  all                     api and worker in one process (the default for npm start)
  api                     GraphQL over HTTP and WebSocket
  worker                  queue consumer and reconciler
  migrate                 apply database migrations and exit
  create-key --role admin|partner [--label TEXT]
                          print a new API key for the operators' account
  print-schema            print the GraphQL SDL
  sim-provider            the simulated provider as an HTTP server (Replicate protocol)`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "print-schema") {
    process.stdout.write(await printGraphQLSchema());
    return 0;
  }
  if (!command || command === "help" || command === "--help") {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(
    config.LOG_LEVEL,
    { role: command },
    { sensitive: config.LOG_SENSITIVE },
  );
  switch (command) {
    case "api":
    case "worker":
    case "all":
      if (command !== "all" && !config.REDIS_URL) {
        // Without Redis the queue and pub/sub live in one process: a lone api or worker
        // would accept work nobody runs, or run work nobody hears about.
        console.error(`"${command}" alone needs REDIS_URL; without Redis run "all"`);
        return 2;
      }
      return serve(config, logger, { api: command !== "worker", worker: command !== "api" });
    case "migrate":
      return runMigrate(config, logger);
    case "create-key":
      return createKey(config, rest);
    case "sim-provider":
      return serveSimProvider(config, logger);
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

async function serve(
  config: Config,
  logger: Logger,
  roles: { api: boolean; worker: boolean },
): Promise<number> {
  // Before anything that may start a span: the provider must be registered first.
  const tracing = startTracing({
    endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT,
    attributes: { "gengate.role": roles.api ? (roles.worker ? "all" : "api") : "worker" },
  });
  const app: App = await createApp(config, roles, logger);
  let http: HttpServer | undefined;
  if (roles.api) http = await startHttpServer(app, await buildGraphQLSchema());
  const metricsPort = metricsPortFor(config.METRICS_PORT, roles);
  let metricsServer: MetricsServer | undefined;
  if (metricsPort !== null) {
    metricsServer = await startMetricsServer(app.metrics, {
      port: metricsPort,
      host: config.HOST,
      logger,
    });
  }
  if (roles.worker) logger.info({ concurrency: config.WORKER_CONCURRENCY }, "worker consuming");

  const done = new Promise<number>((resolve) => {
    let shuttingDown = false;
    const shutdown = (signal: string) => {
      if (shuttingDown) return;
      shuttingDown = true;
      logger.info({ signal }, "shutting down");
      const force = setTimeout(() => {
        logger.error("shutdown timed out; exiting");
        resolve(1);
      }, config.SHUTDOWN_TIMEOUT_SECONDS * 1000);
      force.unref();
      (async () => {
        await http?.close();
        await metricsServer?.close();
        await app.stop();
        await tracing.shutdown();
      })()
        .then(() => {
          logger.info("stopped");
          resolve(0);
        })
        .catch((err: unknown) => {
          logger.error({ err }, "error during shutdown");
          resolve(1);
        });
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
  });
  return done;
}

async function serveSimProvider(config: Config, logger: Logger): Promise<number> {
  if (!config.SIM_PROVIDER_TOKEN || !config.SIM_PROVIDER_WEBHOOK_SECRET?.startsWith("whsec_")) {
    console.error(
      "sim-provider needs SIM_PROVIDER_TOKEN (the bearer token clients send) and SIM_PROVIDER_WEBHOOK_SECRET (whsec_..., signs its webhooks)",
    );
    return 2;
  }
  const server = await startSimServer({
    port: config.SIM_PROVIDER_PORT,
    host: config.HOST,
    apiToken: config.SIM_PROVIDER_TOKEN,
    webhookSecret: config.SIM_PROVIDER_WEBHOOK_SECRET,
    publicUrl: config.SIM_PROVIDER_PUBLIC_URL,
    latencyMs: config.SIM_LATENCY_MS,
    latencyJitter: config.SIM_LATENCY_JITTER,
    failureRate: config.SIM_FAILURE_RATE,
    progressSteps: config.SIM_PROGRESS_STEPS,
    mode: config.SIM_PROVIDER_MODE,
    logger,
  });
  logger.info({ port: server.port, url: server.url }, "sim-provider listening");
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve());
    process.once("SIGINT", () => resolve());
  });
  await server.close();
  logger.info("stopped");
  return 0;
}

async function runMigrate(config: Config, logger: Logger): Promise<number> {
  const db = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    poolSize: 1,
  });
  try {
    const applied = await migrate(db.dataSource);
    logger.info({ applied }, applied.length ? "migrations applied" : "database is up to date");
    return 0;
  } finally {
    await db.close();
  }
}

async function createKey(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { role: { type: "string" }, label: { type: "string" } },
    strict: true,
  });
  const role = values.role?.toUpperCase();
  if (role !== "ADMIN" && role !== "PARTNER") {
    console.error("create-key needs --role admin or --role partner");
    return 2;
  }
  const db = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    poolSize: 1,
  });
  try {
    await migrate(db.dataSource);
    const secret = config.TOKEN_SECRET ?? embeddedSecret(config.DATA_DIR);
    const auth = new AuthService(new ApiKeyRepository(db.dataSource), secret);
    const { apiKey, key } = await auth.issueOperatorKey(role, values.label ?? null);
    console.error(`created ${role} key ${apiKey.id} for account ${apiKey.accountId} (shown once):`);
    console.log(key);
    return 0;
  } finally {
    await db.close();
  }
}

process.on("unhandledRejection", (reason) => {
  console.error(
    JSON.stringify({ level: "fatal", msg: "unhandled rejection", reason: String(reason) }),
  );
  process.exit(1);
});

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(
      JSON.stringify({
        level: "fatal",
        msg: "failed to start",
        err: String(err),
        stack: (err as Error)?.stack,
      }),
    );
    process.exit(1);
  },
);
