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
import { GraphQLError, Kind, parse, type GraphQLSchema } from "graphql";
import type { CloseCode } from "graphql-ws";
import { useServer } from "graphql-ws/use/ws";
import { WebSocket, WebSocketServer } from "ws";
import type { App } from "../app/app";
import { AppError } from "../common/errors";
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
  const wsServer = useServer<{ authorization?: unknown }>(
    {
      schema,
      onConnect: async (ctx) => {
        try {
          const auth = ctx.connectionParams?.authorization;
          // A bad credential closes the socket (4403); none at all connects, unauthenticated.
          await services.auth.authenticate(typeof auth === "string" ? auth : undefined);
          // Gone while we authenticated: onClose has run already, nothing may be kept for it.
          if (ctx.extra.socket.readyState !== WebSocket.OPEN) return false;
          connections.add(ctx);
          return true;
        } catch (err) {
          if (err instanceof AppError) return false;
          logger.error({ err }, "websocket authentication failed");
          return false;
        }
      },
      // Checked again for every operation, so a key revoked (or a token expired) while the
      // socket stays open cannot start new subscriptions.
      context: async (ctx): Promise<GraphQLContext> => {
        const auth = ctx.connectionParams?.authorization;
        const viewer = await services.auth
          .authenticate(typeof auth === "string" ? auth : undefined)
          .catch((err: unknown) => {
            if (err instanceof AppError) return null;
            throw err;
          });
        return { viewer, services };
      },
      onClose: (ctx) => {
        connections.delete(ctx);
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
    refuseSubscriptions(),
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
          throw err;
        }
      },
    }),
  );

  // What express would answer in HTML (with the stack outside production): a body too large,
  // malformed JSON, an unsupported encoding. Clients get GraphQL-shaped JSON with a code.
  expressApp.use(
    (err: unknown, _req: express.Request, res: express.Response, next: express.NextFunction) => {
      if (res.headersSent) {
        next(err);
        return;
      }
      const status = httpStatusOf(err);
      if (status >= 500) logger.error({ err }, "unexpected error in an HTTP handler");
      const code =
        status === 413
          ? "PAYLOAD_TOO_LARGE"
          : status < 500
            ? "BAD_REQUEST"
            : "INTERNAL_SERVER_ERROR";
      const message =
        status === 413
          ? "Request body too large"
          : status < 500
            ? requestErrorMessage(err)
            : "Internal server error";
      res.status(status).json({ errors: [{ message, extensions: { code } }] });
    },
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

/**
 * Subscriptions are served over graphql-ws only. Over HTTP Apollo would run one as a query
 * (an internal error), and graphql's validation throws (a 500) on a subscription with a bad
 * @skip or @include: a document with a subscription is refused before it gets there.
 */
function refuseSubscriptions(): express.RequestHandler {
  return (req, res, next) => {
    const body = req.body as { query?: unknown } | undefined;
    const query = req.method === "GET" ? req.query.query : body?.query;
    if (typeof query !== "string" || !query.includes("subscription")) {
      next();
      return;
    }
    let document;
    try {
      document = parse(query);
    } catch {
      next(); // Apollo answers the syntax error
      return;
    }
    const subscribes = document.definitions.some(
      (d) => d.kind === Kind.OPERATION_DEFINITION && d.operation === "subscription",
    );
    if (!subscribes) {
      next();
      return;
    }
    res.status(400).json({
      errors: [
        {
          message: `Subscriptions are served over the WebSocket (graphql-ws) at ${GRAPHQL_PATH}`,
          extensions: { code: "BAD_REQUEST" },
        },
      ],
    });
  };
}

/** The 4xx status body-parser (and express) attach to a client's error; else 500. */
function httpStatusOf(err: unknown): number {
  const e = err as { status?: unknown; statusCode?: unknown } | null;
  const status = typeof e?.status === "number" ? e.status : e?.statusCode;
  return typeof status === "number" && status >= 400 && status < 500 ? status : 500;
}

function requestErrorMessage(err: unknown): string {
  const type = (err as { type?: unknown } | null)?.type;
  switch (type) {
    case "entity.parse.failed":
      return "Request body is not valid JSON";
    case "encoding.unsupported":
    case "charset.unsupported":
      return "Unsupported content encoding or charset";
    default:
      return "Bad request";
  }
}

function errorCodeOf(formatted: { extensions?: Record<string, unknown> }): string {
  const code = formatted.extensions?.code;
  return typeof code === "string" ? code : "INTERNAL_SERVER_ERROR";
}

function toFormatted(error: GraphQLError, app: App): GraphQLError {
  if (isUnexpected(error)) app.logger.error({ err: error }, "unexpected error in a subscription");
  const f = formatError(error.toJSON(), error);
  app.metrics.error("graphql", errorCodeOf(f));
  return new GraphQLError(f.message, { extensions: f.extensions });
}
