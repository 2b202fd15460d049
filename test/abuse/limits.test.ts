import "reflect-metadata";
import { gzipSync } from "node:zlib";
import { getIntrospectionQuery, type GraphQLSchema } from "graphql";
import { loadConfig } from "../../src/config";
import { checkOperation, type QueryLimits } from "../../src/graphql/limits";
import { buildGraphQLSchema } from "../../src/graphql/schema";
import { exampleTabs } from "../../web/src/playground-examples";
import {
  expectCleanAnswer,
  expectCodedErrors,
  initSocket,
  operate,
  postRaw,
  rawSocket,
  type RawSocket,
} from "../helpers/abuse";
import { gql } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const BODY_LIMIT = 256 * 1024;
const json = { "content-type": "application/json" };

/** `{ a { a { … } } }` through introspection's self-referencing `ofType`, `levels` fields deep. */
function nested(levels: number): string {
  const inner = "ofType { ".repeat(levels - 2) + "name" + " }".repeat(levels - 2);
  return `{ __type(name: "Query") { ${inner} } }`;
}

/** Each alias a page of 100 generations with their attempts and outputs. */
function expensive(aliases: number, first: number | string = 100): string {
  const one = (i: number) =>
    `g${i}: generations(first: ${first}) { edges { node { id attempts { provider } outputs { url } } } }`;
  return `query${typeof first === "string" ? "($n: Int)" : ""} { ${Array.from({ length: aliases }, (_, i) => one(i)).join(" ")} }`;
}

describe("request limits", () => {
  let env: TestEnv;
  let server: TestServer;
  let key: string;
  const sockets: RawSocket[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, {
      worker: false,
      overrides: { MAX_REQUEST_BYTES: String(BODY_LIMIT) },
    });
    key = (await partner(server, await adminKey(server), "limits")).key;
  });

  afterAll(async () => {
    for (const s of sockets) s.ws.terminate();
    await server?.stop();
    await env?.cleanup();
  });

  const auth = () => ({ ...json, authorization: `Bearer ${key}` });
  const post = (body: unknown, headers = auth()) =>
    postRaw(server.url, typeof body === "string" ? body : JSON.stringify(body), headers);

  async function socket(): Promise<RawSocket> {
    const { socket: s, ack } = await initSocket(server.url, key);
    expect(ack.type).toBe("connection_ack");
    sockets.push(s);
    return s;
  }

  afterEach(async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
  });

  describe("the defaults let the service's own clients through", () => {
    let schema: GraphQLSchema;
    let defaults: QueryLimits;
    beforeAll(async () => {
      schema = await buildGraphQLSchema();
      const c = loadConfig({});
      defaults = {
        maxDepth: c.MAX_QUERY_DEPTH,
        maxComplexity: c.MAX_QUERY_COMPLEXITY,
        maxTokens: c.MAX_QUERY_TOKENS,
      };
    });

    it("has defaults of 15 levels, a cost of 10000 and 5000 tokens", () => {
      expect(defaults).toEqual({ maxDepth: 15, maxComplexity: 10000, maxTokens: 5000 });
    });

    it("passes GraphiQL's full introspection query", () => {
      const query = getIntrospectionQuery({
        descriptions: true,
        specifiedByUrl: true,
        directiveIsRepeatable: true,
        schemaDescription: true,
        inputValueDeprecation: true,
      });
      expect(checkOperation(schema, { query }, defaults)).toHaveProperty("document");
    });

    it("passes every playground example", () => {
      for (const tab of exampleTabs("00000000-0000-4000-8000-000000000000")) {
        const variables = tab.variables ? JSON.parse(tab.variables) : {};
        const checked = checkOperation(schema, { query: tab.query, variables }, defaults);
        expect({ query: tab.query, ...checked }).toHaveProperty("document");
      }
    });

    it("passes a page of 100 generations with their attempts and outputs", () => {
      const checked = checkOperation(schema, { query: expensive(1) }, defaults);
      expect(checked).toHaveProperty("document");
    });
  });

  describe("over HTTP", () => {
    it("answers a body over MAX_REQUEST_BYTES with 413 and PAYLOAD_TOO_LARGE", async () => {
      const res = await post({
        query: `{ viewer { role } }`,
        variables: { pad: "x".repeat(BODY_LIMIT) },
      });
      expect(res.status).toBe(413);
      expectCleanAnswer(res);
      expect(res.json.errors[0].extensions.code).toBe("PAYLOAD_TOO_LARGE");
    });

    it("answers a compressed body that inflates past the limit with 413", async () => {
      const big = JSON.stringify({
        query: `{ viewer { role } }`,
        variables: { pad: "x".repeat(4 * BODY_LIMIT) },
      });
      const res = await postRaw(server.url, gzipSync(big), {
        ...auth(),
        "content-encoding": "gzip",
      });
      expect(res.status).toBe(413);
      expectCleanAnswer(res);
    });

    it("accepts a body just under the limit (control)", async () => {
      const query = `{ viewer { role } }`;
      const pad = "x".repeat(BODY_LIMIT - 200);
      const res = await post({ query, variables: { pad } });
      expect(res.status).toBe(200);
      expect(res.json.data.viewer.role).toBe("PARTNER");
    });

    it.each([
      ["an unterminated object", "{"],
      ["a bare word", "nul"],
      ["a string", `"{ viewer { role } }"`],
      ["a number", "123"],
      ["an empty body", ""],
      ["an empty object", "{}"],
      ["a query that is a number", `{"query": 5}`],
      ["a null query", `{"query": null}`],
      ["variables that are a string", `{"query": "{ viewer { role } }", "variables": "x"}`],
      ["variables that are a list", `{"query": "{ viewer { role } }", "variables": [1]}`],
      ["an operationName that is a number", `{"query": "{ viewer { role } }", "operationName": 7}`],
      ["an unknown operationName", `{"query": "{ viewer { role } }", "operationName": "Nope"}`],
      ["extensions that are a string", `{"query": "{ viewer { role } }", "extensions": "x"}`],
      ["a byte-order mark", `\uFEFF{"query": "{ viewer { role } }"}`],
      ["a lone surrogate", `{"query": "{ viewer { role } }", "variables": {"a": "\\ud800"}}`],
      ["JSON nested 100000 deep", "[".repeat(100000) + "]".repeat(100000)],
      [
        "an object nested 100000 deep",
        `{"query": "{ viewer { role } }", "variables": {"a": ${'{"a":'.repeat(5000)}1${"}".repeat(5000)}}}`,
      ],
      [
        "a batch of two operations",
        `[{"query": "{ viewer { role } }"}, {"query": "{ viewer { role } }"}]`,
      ],
      ["an empty batch", `[]`],
      ["a subscription with a bad @skip", `{"query": "subscription { alertRaised @skip { id } }"}`],
      ["a subscription", `{"query": "subscription { alertRaised { id } }"}`],
    ])("answers %s with a coded error, never a 5xx", async (_name, body) => {
      const res = await post(body);
      expectCleanAnswer(res);
    });

    it("answers bytes that are not UTF-8 with a coded error", async () => {
      const res = await postRaw(server.url, Buffer.from([0x7b, 0xff, 0xfe, 0x22, 0x7d]), auth());
      expectCleanAnswer(res);
      expect(res.status).toBe(400);
    });

    it("refuses a batch (an array of operations) with 400", async () => {
      const res = await post([{ query: `{ viewer { role } }` }, { query: `{ viewer { role } }` }]);
      expect(res.status).toBe(400);
      expectCleanAnswer(res);
    });

    it.each([
      ["text/plain", {}],
      ["application/x-www-form-urlencoded", {}],
      ["multipart/form-data; boundary=x", {}],
      ["application/graphql", {}],
      ["application/json; charset=utf-16", {}],
      ["application/json", { "content-encoding": "gzip" }],
      ["application/json", { "content-encoding": "bogus" }],
      ["application/json", { "content-encoding": "br" }],
      ["", {}],
    ])("answers content type %j %j with a coded error", async (type, extra) => {
      const headers: Record<string, string> = { authorization: `Bearer ${key}`, ...extra };
      if (type) headers["content-type"] = type;
      const res = await postRaw(server.url, `{"query": "{ viewer { role } }"}`, headers);
      expectCleanAnswer(res);
    });

    it("answers GET requests with odd parameters with coded errors", async () => {
      for (const path of [
        "/graphql?query=%7B",
        "/graphql?query=mutation%20%7B%20revokeApiKey(id%3A%221%22)%20%7D",
        "/graphql?variables=%7B",
        "/graphql?extensions=x",
      ]) {
        const res = await fetch(`${server.url}${path}`, {
          headers: { authorization: `Bearer ${key}`, "apollo-require-preflight": "1" },
        });
        const text = await res.text();
        expectCleanAnswer({
          status: res.status,
          contentType: res.headers.get("content-type") ?? "",
          text,
          json: JSON.parse(text),
        });
      }
    });

    it("refuses an operation deeper than MAX_QUERY_DEPTH with GRAPHQL_VALIDATION_FAILED", async () => {
      const res = await post({ query: nested(100) });
      expect(res.status).toBe(400);
      expectCleanAnswer(res);
      expect(res.json.errors[0].extensions).toMatchObject({
        code: "GRAPHQL_VALIDATION_FAILED",
        limit: "MAX_QUERY_DEPTH",
        max: 15,
      });
      expect(res.json.data ?? null).toBeNull();
    });

    it("counts depth through fragments", async () => {
      const fragments = Array.from(
        { length: 20 },
        (_, i) => `fragment F${i} on __Type { name ofType { ...F${i + 1} } }`,
      ).join("\n");
      const query = `{ __type(name: "Query") { ...F0 } }\n${fragments}\nfragment F20 on __Type { name }`;
      const res = await post({ query });
      expect(res.status).toBe(400);
      expect(res.json.errors[0].extensions.limit).toBe("MAX_QUERY_DEPTH");
    });

    it("answers an operation at the depth limit (control)", async () => {
      const res = await post({ query: nested(15) });
      expect(res.status).toBe(200);
      expect(res.json.errors).toBeUndefined();
    });

    it("refuses fragments that spread each other with a validation error, not a hang", async () => {
      const query = `{ ...A } fragment A on Query { viewer { role } ...B } fragment B on Query { ...A }`;
      const res = await post({ query });
      expect(res.status).toBe(400);
      expectCleanAnswer(res);
    });

    it("refuses a fragment bomb (each fragment spreading the next twice) quickly", async () => {
      const fragments = Array.from(
        { length: 40 },
        (_, i) => `fragment F${i} on Query { viewer { role } ...F${i + 1} ...F${i + 1} }`,
      ).join("\n");
      const query = `{ ...F0 }\n${fragments}\nfragment F40 on Query { viewer { role } }`;
      const started = Date.now();
      const res = await post({ query });
      expectCleanAnswer(res);
      expect(Date.now() - started).toBeLessThan(5000);
    });

    it("refuses 10000 aliases with GRAPHQL_PARSE_FAILED (MAX_QUERY_TOKENS)", async () => {
      const query = `{ ${Array.from({ length: 10000 }, (_, i) => `a${i}: __typename`).join(" ")} }`;
      const res = await post({ query });
      expect(res.status).toBe(400);
      expectCleanAnswer(res);
      expect(res.json.errors[0].extensions.code).toBe("GRAPHQL_PARSE_FAILED");
    });

    it("refuses expensive list queries with GRAPHQL_VALIDATION_FAILED (MAX_QUERY_COMPLEXITY)", async () => {
      const res = await post({ query: expensive(8) });
      expect(res.status).toBe(400);
      expectCleanAnswer(res);
      expect(res.json.errors[0].extensions).toMatchObject({
        code: "GRAPHQL_VALIDATION_FAILED",
        limit: "MAX_QUERY_COMPLEXITY",
        max: 10000,
      });
      expect(res.json.errors[0].extensions.actual).toBeGreaterThan(10000);
    });

    it("costs a page by the `first` given in variables", async () => {
      const many = await post({ query: expensive(8, "$n"), variables: { n: 100 } });
      expect(many.json.errors[0].extensions.limit).toBe("MAX_QUERY_COMPLEXITY");
      const few = await post({ query: expensive(8, "$n"), variables: { n: 2 } });
      expect(few.status).toBe(200);
      expect(few.json.errors).toBeUndefined();
    });

    it("answers bad variables with BAD_USER_INPUT and 400, as before the cost check", async () => {
      const res = await post({ query: expensive(1, "$n"), variables: { n: "many" } });
      expect(res.status).toBe(400);
      expectCleanAnswer(res);
      expect(res.json.errors[0].extensions.code).toBe("BAD_USER_INPUT");
    });

    it("answers many aliases of a cheap field under the limits (control)", async () => {
      const query = `{ ${Array.from({ length: 100 }, (_, i) => `a${i}: viewer { role }`).join(" ")} }`;
      const res = await gql(server.url, query, {}, key);
      expect(res.errors).toBeUndefined();
      expect(res.data!.a99.role).toBe("PARTNER");
    });
  });

  describe("over the WebSocket", () => {
    it.each([
      ["a syntax error", { query: "{ viewer { role " }, "GRAPHQL_PARSE_FAILED"],
      ["too many tokens", { query: `{ ${"__typename ".repeat(6000)}}` }, "GRAPHQL_PARSE_FAILED"],
      ["an unknown field", { query: "{ nope }" }, "GRAPHQL_VALIDATION_FAILED"],
      ["too deep", { query: nested(40) }, "GRAPHQL_VALIDATION_FAILED"],
      ["too expensive", { query: expensive(8) }, "GRAPHQL_VALIDATION_FAILED"],
      ["a bad variable", { query: expensive(1, "$n"), variables: { n: "x" } }, "BAD_USER_INPUT"],
      [
        "a subscription with a bad @skip",
        { query: "subscription { alertRaised @skip { id } }" },
        "GRAPHQL_VALIDATION_FAILED",
      ],
      [
        "an unknown operation name",
        { query: "{ viewer { role } }", operationName: "Nope" },
        "OPERATION_RESOLUTION_FAILURE",
      ],
      [
        "two operations and no name",
        { query: "query A { viewer { role } } query B { viewer { role } }" },
        "OPERATION_RESOLUTION_FAILURE",
      ],
    ])("answers %s with an error message and keeps the connection", async (_n, payload, code) => {
      const s = await socket();
      const answer = await operate(s, "1", payload);
      expect(answer.type).toBe("error");
      expectCodedErrors(answer.payload);
      expect(answer.payload[0].extensions.code).toBe(code);
      const ok = await operate(s, "2", { query: "{ viewer { role } }" });
      expect(ok).toMatchObject({
        type: "next",
        payload: { data: { viewer: { role: "PARTNER" } } },
      });
    });

    it("closes a connection sending a message over MAX_REQUEST_BYTES with 1009", async () => {
      const s = await socket();
      s.send({
        id: "1",
        type: "subscribe",
        payload: { query: `{ viewer { role } }`, variables: { pad: "x".repeat(BODY_LIMIT) } },
      });
      expect((await s.closed).code).toBe(1009);
    });

    it.each([
      ["text that is not JSON", "not json", 4400],
      ["an unknown message type", { type: "launch" }, 4400],
      ["a subscribe without a query", { id: "1", type: "subscribe", payload: {} }, 4400],
      ["a query that is a number", { id: "1", type: "subscribe", payload: { query: 5 } }, 4400],
      ["a second connection_init", { type: "connection_init", payload: {} }, 4429],
    ])("closes a connection sending %s with a clear code", async (_n, message, code) => {
      const s = await socket();
      s.send(message);
      expect((await s.closed).code).toBe(code);
    });

    it("closes a connection subscribing before connection_init with 4401", async () => {
      const s = await rawSocket(server.url);
      sockets.push(s);
      s.send({ id: "1", type: "subscribe", payload: { query: "{ viewer { role } }" } });
      expect((await s.closed).code).toBe(4401);
    });

    it("closes a connection reusing a live operation id with 4409", async () => {
      const s = await socket();
      const gen = await gql(
        server.url,
        `mutation { generate(input: { mediaType: IMAGE, userId: "u", prompt: "slow [sim:latency=60000]", width: 64, height: 64 }) { id } }`,
        {},
        key,
      );
      const id = gen.data!.generate.id;
      const watch = `subscription($id: ID!) { generationUpdated(id: $id) { type } }`;
      await operate(s, "w", { query: watch, variables: { id } });
      s.send({ id: "w", type: "subscribe", payload: { query: watch, variables: { id } } });
      expect((await s.closed).code).toBe(4409);
      await gql(server.url, `mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id }, key);
    });
  });
});
