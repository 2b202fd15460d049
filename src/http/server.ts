import compression from "compression";
import { metricsHandler } from "../observability";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { ApolloServer } from "@apollo/server";
import { expressMiddleware } from "@as-integrations/express5";
import { ApolloServerPluginDrainHttpServer } from "@apollo/server/plugin/drainHttpServer";
import { ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import cors from "cors";
import express from "express";
import { GraphQLError, type GraphQLSchema } from "graphql";
import type { CloseCode } from "graphql-ws";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import type { App } from "../app/app";
import { AppError, isUnavailableError, unavailable } from "../common/errors";
import type { Viewer } from "../auth/viewer";
import type { GraphQLContext } from "../graphql/context";
import { formatError, isUnexpected } from "../graphql/errors";
import { usageCsvHandler } from "./usage-csv.handler";
import { mountWebPages } from "./web-pages";

export interface HttpServer {
  server: http.Server;
  port: number;
  /** Stops accepting, closes WebSockets, lets in-flight requests finish. */
  close(): Promise<void>;
}

const GRAPHQL_PATH = "/graphql";
const MAX_BODY = "1mb";

/** HTTP and graphql-ws on one port, plus health, readiness and stored outputs. */
export async function startHttpServer(app: App, schema: GraphQLSchema): Promise<HttpServer> {
  const { config, logger, services } = app;
  const expressApp = express();
  expressApp.disable("x-powered-by");
  // gzip for what compresses (the pages' scripts, GraphQL and metrics text); images pass as they are.
  expressApp.use(compression());
  const server = http.createServer(expressApp);

  const wss = new WebSocketServer({ server, path: GRAPHQL_PATH });
  // Accepted connections, for the WebSocket gauges; each holds its operations in `subscriptions`.
  const connections = new Set<{ subscriptions: Record<string, unknown> }>();
  app.metrics.watchWebSockets(() => ({
    connections: connections.size,
    subscriptions: [...connections].reduce((n, c) => n + Object.keys(c.subscriptions).length, 0),
  }));
  // Each operation's viewer, from `onSubscribe` to `context`.
  const viewers = new WeakMap<object, Map<string, Viewer | null>>();
  const wsServer = useServer<{ authorization?: unknown }>(
    {
      schema,
      onConnect: async (ctx) => {
        try {
          const auth = ctx.connectionParams?.authorization;
          // A bad credential closes the socket (4403); none at all connects, unauthenticated.
          await services.auth.authenticate(typeof auth === "string" ? auth : undefined);
          connections.add(ctx);
          return true;
        } catch (err) {
          if (err instanceof AppError) return false;
          if (isUnavailableError(err)) {
            // 1013 "try again later": clients reconnect (a 4403 would say the key is bad).
            logger.warn(
              { err: String(err) },
              "websocket refused: a backing service is unavailable",
            );
            ctx.extra.socket.close(1013, "Service unavailable; try again later");
            return false;
          }
          logger.error({ err }, "websocket authentication failed");
          return false;
        }
      },
      // Checked again for every operation, so a key revoked (or a token expired) while the
      // socket stays open cannot start new subscriptions. Here rather than in `context`: what
      // `context` throws closes the whole socket (4500, which clients do not retry), what this
      // returns is that operation's error (SERVICE_UNAVAILABLE while Postgres restarts).
      onSubscribe: async (ctx, id) => {
        const auth = ctx.connectionParams?.authorization;
        try {
          const viewer = await services.auth
            .authenticate(typeof auth === "string" ? auth : undefined)
            .catch((err: unknown) => {
              if (err instanceof AppError) return null;
              throw err;
            });
          let pending = viewers.get(ctx);
          if (!pending) viewers.set(ctx, (pending = new Map()));
          pending.set(id, viewer);
          return undefined;
        } catch (err) {
          const original = err instanceof Error ? err : new Error(String(err));
          return [new GraphQLError(original.message, { originalError: original })];
        }
      },
      context: (ctx, id): GraphQLContext => {
        const pending = viewers.get(ctx);
        const viewer = pending?.get(id) ?? null;
        pending?.delete(id);
        return { viewer, services };
      },
      onClose: (ctx) => {
        connections.delete(ctx);
        viewers.delete(ctx);
      },
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors
          ? { ...result, errors: result.errors.map((e) => toFormatted(e, app)) }
          : result,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => toFormatted(e, app)),
    },
    wss,
  );

  const apollo = new ApolloServer<GraphQLContext>({
    schema,
    introspection: true,
    csrfPrevention: true,
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer: server }),
      // Our own GraphiQL (web/, see ./web-pages.ts) replaces Apollo's CDN-loaded landing pages.
      ApolloServerPluginLandingPageDisabled(),
      {
        async serverWillStart() {
          return { drainServer: async () => wsServer.dispose() };
        },
      },
    ],
    includeStacktraceInErrorResponses: false,
    // main.ts owns the signals: it stops the api, then the worker, then the connections.
    stopOnTerminationSignals: false,
    formatError: (formatted, error) => {
      if (isUnexpected(error)) logger.error({ err: error }, "unexpected error in a resolver");
      else if (isUnavailableError(originalOf(error)))
        logger.warn(
          { err: String(originalOf(error)) },
          "request refused: a backing service is unavailable",
        );
      const out = formatError(formatted, error);
      app.metrics.error("graphql", errorCodeOf(out));
      return out;
    },
  });
  await apollo.start();

  mountWebPages(expressApp, GRAPHQL_PATH, { playground: config.PLAYGROUND });
  expressApp.get("/metrics", metricsHandler(app.metrics, app.logger));
  expressApp.get(
    "/usage.csv",
    cors({ origin: config.CORS_ORIGINS === "*" ? "*" : config.CORS_ORIGINS.split(",") }),
    usageCsvHandler({ auth: services.auth, usage: services.usage, logger }),
  );
  expressApp.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  expressApp.get("/readyz", async (_req, res) => {
    const checks = await app.ready();
    const ok = checks.postgres && checks.redis !== false;
    res.status(ok ? 200 : 503).json({ status: ok ? "ready" : "unavailable", checks });
  });
  expressApp.get("/files/{*key}", async (req, res) => {
    const key = (req.params as { key: string[] }).key.join("/");
    const { expires, sig } = req.query as { expires?: string; sig?: string };
    if (!services.urlSigner.verify(key, expires, sig)) {
      res.status(403).json({ error: "link invalid or expired" });
      return;
    }
    const object = await app.objects.get(key).catch(() => null);
    if (!object) {
      res.status(404).json({ error: "not found" });
      return;
    }
    res.setHeader("content-type", object.contentType);
    res.setHeader("cache-control", "private, max-age=3600, immutable");
    res.send(object.data);
  });
  // Providers sign the raw bytes: the body must reach the adapter exactly as sent.
  expressApp.post(
    "/webhooks/providers/:provider",
    express.raw({ type: () => true, limit: "5mb" }),
    async (req, res) => {
      try {
        const headers: Record<string, string | undefined> = {};
        for (const [k, v] of Object.entries(req.headers))
          headers[k] = Array.isArray(v) ? v.join(", ") : v;
        const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const result = await app.webhooks.handle(String(req.params.provider), { headers, rawBody });
        res.status(result.status).json(result.body);
      } catch (err) {
        logger.error({ err, provider: req.params.provider }, "webhook handling failed");
        res.status(500).json({ ok: false, error: "internal error" });
      }
    },
  );
  expressApp.use(
    GRAPHQL_PATH,
    // Bearer credentials only, never cookies: any allowed origin may call with its token.
    cors({ origin: config.CORS_ORIGINS === "*" ? "*" : config.CORS_ORIGINS.split(",") }),
    express.json({ limit: MAX_BODY }),
    expressMiddleware(apollo, {
      context: async ({ req }): Promise<GraphQLContext> => {
        try {
          const viewer = await services.auth.authenticate(req.headers.authorization);
          return { viewer, services };
        } catch (err) {
          if (err instanceof AppError) {
            throw new GraphQLError(err.message, {
              extensions: { code: err.code, http: { status: 401 } },
            });
          }
          if (isUnavailableError(err)) {
            // Answered like any refusal (200, with the code), not as Apollo's 500.
            const refusal = unavailable();
            throw new GraphQLError(refusal.message, {
              originalError: refusal,
              extensions: { http: { status: 200 } },
            });
          }
          throw err;
        }
      },
    }),
  );

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.PORT, config.HOST, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  if (config.PUBLIC_URL === "http://localhost:0") {
    services.urlSigner.baseUrl = `http://127.0.0.1:${port}`;
  }
  logger.info({ port, url: `${services.urlSigner.baseUrl}${GRAPHQL_PATH}` }, "api listening");

  let closing: Promise<void> | undefined;
  return {
    server,
    port,
    close() {
      closing ??= (async () => {
        for (const client of wss.clients) client.close(1001 as CloseCode, "Server shutting down");
        await apollo.stop();
      })();
      return closing;
    },
  };
}

function errorCodeOf(formatted: { extensions?: Record<string, unknown> }): string {
  const code = formatted.extensions?.code;
  return typeof code === "string" ? code : "INTERNAL_SERVER_ERROR";
}

function originalOf(error: unknown): unknown {
  return error instanceof GraphQLError ? error.originalError : error;
}

function toFormatted(error: GraphQLError, app: App): GraphQLError {
  if (isUnexpected(error)) app.logger.error({ err: error }, "unexpected error in a subscription");
  else if (isUnavailableError(originalOf(error)))
    app.logger.warn(
      { err: String(originalOf(error)) },
      "subscription refused: a backing service is unavailable",
    );
  const f = formatError(error.toJSON(), error);
  app.metrics.error("graphql", errorCodeOf(f));
  return new GraphQLError(f.message, { extensions: f.extensions });
}
