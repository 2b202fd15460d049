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
import type { CloseCode, Context as WsContext } from "graphql-ws";
import { useServer } from "graphql-ws/use/ws";
import { WebSocket, WebSocketServer } from "ws";
import type { Viewer } from "../auth/viewer";
import type { App } from "../app/app";
import { AppError, isUnavailableError, unavailable } from "../common/errors";
import { contextSharingKey, type GraphQLContext } from "../graphql/context";
import { formatError, isUnexpected } from "../graphql/errors";
import {
  checkOperation,
  complexityPlugin,
  depthLimitRule,
  type QueryLimits,
} from "../graphql/limits";
import { sharedSubscribe } from "../graphql/shared-subscribe";
import { usageCsvHandler } from "./usage-csv.handler";
import { mountWebPages } from "./web-pages";

export interface HttpServer {
  server: http.Server;
  port: number;
  /** Stops accepting, closes WebSockets, lets in-flight requests finish. */
  close(): Promise<void>;
}

const GRAPHQL_PATH = "/graphql";
/** Close code for a connection over its credential's cap (graphql-ws's own "too many" code). */
export const WS_TOO_MANY_CONNECTIONS = 4429;
/** Close code when the process holds WS_MAX_CONNECTIONS already ("try again later"). */
export const WS_SERVER_FULL = 1013;

type WsExtra = { socket: WebSocket };
type WsCtx = WsContext<{ authorization?: unknown }, WsExtra>;

/** HTTP and graphql-ws on one port, plus health, readiness and stored outputs. */
export async function startHttpServer(app: App, schema: GraphQLSchema): Promise<HttpServer> {
  const { config, logger, services } = app;
  const expressApp = express();
  expressApp.disable("x-powered-by");
  // gzip for what compresses (the pages' scripts, GraphQL and metrics text); images pass as they are.
  expressApp.use(compression());
  const server = http.createServer(expressApp);

  const limits: QueryLimits = {
    maxDepth: config.MAX_QUERY_DEPTH,
    maxComplexity: config.MAX_QUERY_COMPLEXITY,
    maxTokens: config.MAX_QUERY_TOKENS,
  };
  const wss = new WebSocketServer({
    server,
    path: GRAPHQL_PATH,
    // A larger message closes the socket with 1009 before it is buffered whole.
    maxPayload: config.MAX_REQUEST_BYTES,
  });
  // Accepted connections, each under its credential's name; each holds its operations in
  // `subscriptions`. Counted per process (README, Configuration).
  const connections = new Map<WsCtx, string>();
  const byCredential = new Map<string, Set<WsCtx>>();
  // Operations admitted and not yet ended, per credential, and per connection (by operation id)
  // so that each is let go once: a count, because summing every connection of a credential on
  // each subscribe costs the square of its connections (5,000 sockets on one key: 25 million
  // steps to open them).
  const liveByCredential = new Map<string, number>();
  const admitted = new WeakMap<WsCtx, Map<string, string>>();
  const admit = (ctx: WsCtx, id: string, name: string) => {
    let mine = admitted.get(ctx);
    if (!mine) admitted.set(ctx, (mine = new Map()));
    mine.set(id, name);
    liveByCredential.set(name, (liveByCredential.get(name) ?? 0) + 1);
  };
  const release = (ctx: WsCtx, id: string) => {
    const name = admitted.get(ctx)?.get(id);
    if (name === undefined) return;
    admitted.get(ctx)!.delete(id);
    const left = (liveByCredential.get(name) ?? 1) - 1;
    if (left > 0) liveByCredential.set(name, left);
    else liveByCredential.delete(name);
  };
  app.metrics.watchWebSockets(() => ({
    connections: connections.size,
    subscriptions: [...connections.keys()].reduce(
      (n, c) => n + Object.keys(c.subscriptions).length,
      0,
    ),
  }));
  const forget = (ctx: WsCtx) => {
    const name = connections.get(ctx);
    if (name === undefined) return;
    connections.delete(ctx);
    const set = byCredential.get(name);
    set?.delete(ctx);
    if (set?.size === 0) byCredential.delete(name);
  };
  // Each operation's viewer, from `onSubscribe` to `context`.
  const viewers = new WeakMap<object, Map<string, Viewer | null>>();
  const wsServer = useServer<{ authorization?: unknown }, WsExtra>(
    {
      schema,
      // Subscribers of one generation with the same selection and credential get one
      // execution of each event between them, not one each (the fan-out bench).
      subscribe: sharedSubscribe(schema, {
        contextKey: (context) => contextSharingKey(context as GraphQLContext),
        onResults: (executed, shared) => app.metrics.subscriptionResults(executed, shared),
      }),
      onConnect: async (ctx) => {
        let viewer: Viewer | null;
        try {
          const auth = ctx.connectionParams?.authorization;
          // A bad credential closes the socket (4403); none at all connects, unauthenticated.
          viewer = await services.auth.authenticate(typeof auth === "string" ? auth : undefined);
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
        const socket = ctx.extra.socket;
        // Gone while we authenticated: onClose has run already, nothing may be kept for it.
        if (socket.readyState !== WebSocket.OPEN) return false;
        if (connections.size >= config.WS_MAX_CONNECTIONS) {
          socket.close(WS_SERVER_FULL, "Too many connections; try again later");
          return false;
        }
        const name = credentialName(viewer);
        const mine = byCredential.get(name) ?? new Set<WsCtx>();
        if (mine.size >= config.WS_MAX_CONNECTIONS_PER_KEY) {
          socket.close(WS_TOO_MANY_CONNECTIONS, "Too many connections for this credential");
          return false;
        }
        mine.add(ctx);
        byCredential.set(name, mine);
        connections.set(ctx, name);
        return true;
      },
      // Parsed, validated and costed like an HTTP request; within the connection's and the
      // credential's caps of operations in flight (this one is already counted). The credential
      // is checked again for every operation, so a key revoked (or a token expired) while the
      // socket stays open cannot start new subscriptions. Here rather than in `context`: what
      // `context` throws closes the whole socket (4500, which clients do not retry), what this
      // returns is that operation's error (SERVICE_UNAVAILABLE while Postgres restarts).
      onSubscribe: async (ctx, id, payload) => {
        const perConnection = Object.keys(ctx.subscriptions).length;
        if (perConnection > config.WS_MAX_SUBSCRIPTIONS_PER_CONNECTION) {
          return [tooMany("WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", config)];
        }
        const name = connections.get(ctx);
        // This one counted too, as in `perConnection`.
        const perKey = (name === undefined ? 0 : (liveByCredential.get(name) ?? 0)) + 1;
        if (perKey > config.WS_MAX_SUBSCRIPTIONS_PER_KEY) {
          return [tooMany("WS_MAX_SUBSCRIPTIONS_PER_KEY", config)];
        }
        // Counted from here, before anything is awaited: the next message may be checked
        // meanwhile. An operation refused below is let go again.
        if (name !== undefined) admit(ctx, id, name);
        const checked = checkOperation(schema, payload, limits);
        if ("errors" in checked) {
          release(ctx, id);
          return checked.errors;
        }
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
        } catch (err) {
          release(ctx, id);
          const original = err instanceof Error ? err : new Error(String(err));
          return [new GraphQLError(original.message, { originalError: original })];
        }
        return {
          schema,
          document: checked.document,
          variableValues: payload.variables,
          operationName: payload.operationName,
        };
      },
      context: (ctx, id): GraphQLContext => {
        const pending = viewers.get(ctx);
        const viewer = pending?.get(id) ?? null;
        pending?.delete(id);
        return { viewer, services };
      },
      onComplete: (ctx, id) => release(ctx, id),
      onClose: (ctx) => {
        for (const id of [...(admitted.get(ctx)?.keys() ?? [])]) release(ctx, id);
        forget(ctx);
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
    // One operation per request; a JSON array is refused (400).
    allowBatchedHttpRequests: false,
    parseOptions: { maxTokens: config.MAX_QUERY_TOKENS },
    validationRules: [depthLimitRule(config.MAX_QUERY_DEPTH)],
    plugins: [
      complexityPlugin(config.MAX_QUERY_COMPLEXITY),
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
    express.json({ limit: config.MAX_REQUEST_BYTES }),
    refuseSubscriptions(config.MAX_QUERY_TOKENS),
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
          ? `Request body larger than ${config.MAX_REQUEST_BYTES} bytes`
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
function refuseSubscriptions(maxTokens: number): express.RequestHandler {
  return (req, res, next) => {
    const body = req.body as { query?: unknown } | undefined;
    const query = req.method === "GET" ? req.query.query : body?.query;
    if (typeof query !== "string" || !query.includes("subscription")) {
      next();
      return;
    }
    let document;
    try {
      document = parse(query, { maxTokens });
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

/** Whose caps a connection counts against. */
function credentialName(viewer: Viewer | null): string {
  if (!viewer) return "anonymous";
  if (viewer.apiKeyId) return `key:${viewer.apiKeyId}`;
  return `client:${viewer.accountId}:${viewer.userId ?? ""}`;
}

function tooMany(
  limit: "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION" | "WS_MAX_SUBSCRIPTIONS_PER_KEY",
  config: App["config"],
): GraphQLError {
  const max = config[limit];
  const where = limit === "WS_MAX_SUBSCRIPTIONS_PER_KEY" ? "this credential" : "this connection";
  return new GraphQLError(`Too many operations at once on ${where}; at most ${max}`, {
    extensions: { code: "RATE_LIMITED", limit, max },
  });
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
