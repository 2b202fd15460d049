import "reflect-metadata";
import fc from "fast-check";
import {
  getNamedType,
  isCompositeType,
  isEnumType,
  isInputObjectType,
  isListType,
  isNonNullType,
  isObjectType,
  type GraphQLInputType,
  type GraphQLObjectType,
  type GraphQLSchema,
} from "graphql";
import { buildGraphQLSchema } from "../../src/graphql/schema";
import {
  expectCleanAnswer,
  expectCodedErrors,
  expectNoLeak,
  initSocket,
  operate,
  postRaw,
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

/**
 * Random documents and variables, built from the schema's own fields and arguments with values
 * of any type, then sometimes cut or spliced. Fixed seeds: a failure replays the same way
 * (fast-check prints the counterexample and its path).
 */
const SEED = 20260928;
const HTTP_RUNS = 200;
const WS_RUNS = 150;

/** Strings the other account owns: no answer to A may contain any of them. */
const B_PROMPT = "beta-confidential-prompt-7f3a";
const B_USER = "beta-user-91c2";
const B_NAME = "beta-account-name-5d";

describe("generated GraphQL documents", () => {
  let env: TestEnv;
  let server: TestServer;
  let schema: GraphQLSchema;
  let aKey: string;
  let aToken: string;
  let bKey: string;
  /** Ids of B's things, mixed into the generated values so they reach every id argument. */
  let bIds: string[];
  let secrets: string[];
  let socket: RawSocket;

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, { worker: false });
    schema = await buildGraphQLSchema();
    const admin = await adminKey(server);
    const a = await partner(server, admin, "alpha-fuzz");
    const b = await partner(server, admin, B_NAME);
    aKey = a.key;
    bKey = b.key;
    const token = await gql(
      server.url,
      `mutation { createClientToken(userId: "a-user", canGenerate: true) { token } }`,
      {},
      aKey,
    );
    aToken = token.data!.createClientToken.token;
    const gen = await gql(
      server.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { id } }`,
      { input: { mediaType: "IMAGE", userId: B_USER, prompt: B_PROMPT, width: 64, height: 64 } },
      bKey,
    );
    const keyRows = await server.app.db.dataSource.query(
      `SELECT id FROM api_keys WHERE account_id = $1`,
      [b.accountId],
    );
    bIds = [gen.data!.generate.id, b.accountId, ...keyRows.map((r: { id: string }) => r.id)];
    secrets = [B_PROMPT, B_USER, B_NAME, bKey];
    const init = await initSocket(server.url, aKey);
    expect(init.ack.type).toBe("connection_ack");
    socket = init.socket;
  });

  afterAll(async () => {
    socket?.ws.terminate();
    await server?.stop();
    await env?.cleanup();
  });

  afterEach(async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  /** Any value at all, as a GraphQL literal. */
  function anyLiteral(): fc.Arbitrary<string> {
    const { value } = fc.letrec<{ value: string; list: string; object: string }>((tie) => ({
      value: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        fc.integer().map(String),
        fc.constantFrom("2147483648", "-2147483649", "9007199254740993", "1e309", "-0", "0.1e-400"),
        fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => String(d)),
        fc.string({ unit: "binary", maxLength: 40 }).map((s) => JSON.stringify(s)),
        fc.constantFrom(...bIds.map((id) => JSON.stringify(id))),
        fc.constantFrom("true", "false", "null", "IMAGE", "VIDEO", "BATCH", "NOPE", "$v", "$w"),
        tie("list"),
        tie("object"),
      ),
      list: fc.array(tie("value"), { maxLength: 3 }).map((xs) => `[${xs.join(", ")}]`),
      object: fc
        .array(
          fc.tuple(fc.constantFrom("a", "prompt", "mediaType", "width", "userId"), tie("value")),
          {
            maxLength: 3,
          },
        )
        .map((kvs) => `{ ${kvs.map(([k, v]) => `${k}: ${v}`).join(", ")} }`),
    }));
    return value;
  }

  /** A value that fits the argument's type often, and anything at all otherwise. */
  function literalFor(type: GraphQLInputType, depth = 0): fc.Arbitrary<string> {
    const inner = isNonNullType(type) ? type.ofType : type;
    if (depth > 2) return anyLiteral();
    let fitting: fc.Arbitrary<string>;
    if (isListType(inner)) {
      fitting = fc
        .array(literalFor(inner.ofType as GraphQLInputType, depth + 1), { maxLength: 3 })
        .map((xs) => `[${xs.join(", ")}]`);
    } else if (isEnumType(inner)) {
      fitting = fc.constantFrom(...inner.getValues().map((v) => v.name));
    } else if (isInputObjectType(inner)) {
      const fields = Object.values(inner.getFields());
      fitting = fc
        .subarray(fields)
        .chain((fs) =>
          fc.tuple(...fs.map((f) => literalFor(f.type, depth + 1).map((v) => `${f.name}: ${v}`))),
        )
        .map((kvs) => `{ ${kvs.join(", ")} }`);
    } else {
      switch (getNamedType(inner)!.name) {
        case "Int":
          fitting = fc.oneof(fc.integer({ min: -5, max: 300 }), fc.integer()).map(String);
          break;
        case "Float":
          fitting = fc.double({ noNaN: true, noDefaultInfinity: true }).map(String);
          break;
        case "Boolean":
          fitting = fc.boolean().map(String);
          break;
        case "ID":
          fitting = fc
            .oneof(fc.constantFrom(...bIds), fc.uuid(), fc.string({ maxLength: 20 }))
            .map((s) => JSON.stringify(s));
          break;
        default:
          fitting = fc.string({ unit: "grapheme", maxLength: 30 }).map((s) => JSON.stringify(s));
      }
    }
    return fc.oneof({ weight: 4, arbitrary: fitting }, { weight: 1, arbitrary: anyLiteral() });
  }

  /** A selection set on `type`, `depth` levels at most, with aliases, fragments and directives. */
  function selections(type: GraphQLObjectType, depth: number): fc.Arbitrary<string> {
    const fields = Object.values(type.getFields());
    const field = fc.constantFrom(...fields).chain((f) => {
      const named = getNamedType(f.type);
      const args = fc
        .subarray([...f.args])
        .chain((as) =>
          as.length === 0
            ? fc.constant("")
            : fc
                .tuple(...as.map((a) => literalFor(a.type).map((v) => `${a.name}: ${v}`)))
                .map((kvs) => `(${kvs.join(", ")})`),
        );
      const sub =
        isCompositeType(named) && isObjectType(named)
          ? depth > 0
            ? selections(named, depth - 1).map((s) => ` { ${s} }`)
            : fc.constant(" { __typename }")
          : fc.constantFrom("", "", " { x }");
      const alias = fc.oneof(
        { weight: 3, arbitrary: fc.constant("") },
        fc.constantFrom("a: ", "b: ", "__x: "),
      );
      const directive = fc.oneof(
        { weight: 4, arbitrary: fc.constant("") },
        fc.constantFrom(" @skip(if: true)", " @include(if: $v)", " @nope", " @skip"),
      );
      return fc
        .tuple(alias, args, directive, sub)
        .map(([al, ar, d, s]) => `${al}${f.name}${ar}${d}${s}`);
    });
    const extra = fc.constantFrom("__typename", "... on Query { __typename }", "...F", "nope");
    return fc
      .array(fc.oneof({ weight: 5, arbitrary: field }, { weight: 1, arbitrary: extra }), {
        minLength: 1,
        maxLength: 3,
      })
      .map((xs) => xs.join(" "));
  }

  /** A whole operation, sometimes damaged, with variables of any shape. */
  function operation(roots: Array<"query" | "mutation" | "subscription">) {
    const doc = fc.constantFrom(...roots).chain((kind) => {
      const root =
        kind === "query"
          ? schema.getQueryType()!
          : kind === "mutation"
            ? schema.getMutationType()!
            : schema.getSubscriptionType()!;
      const header = fc.constantFrom(
        "",
        "($v: Boolean)",
        "($v: Int, $w: String)",
        "($v: ID!)",
        "($v: GenerateInput)",
        "($v: [Nope])",
      );
      return fc.tuple(header, selections(root, 3)).map(([h, s]) => `${kind} Op${h} { ${s} }`);
    });
    const damaged = fc
      .tuple(doc, fc.nat(), fc.nat({ max: 20 }), fc.string({ unit: "binary", maxLength: 5 }))
      .map(([d, at, cut, insert]) => {
        const i = at % (d.length + 1);
        return d.slice(0, i) + insert + d.slice(i + cut);
      });
    const text = fc.oneof(
      { weight: 6, arbitrary: doc },
      { weight: 2, arbitrary: damaged },
      { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 200 }) },
    );
    const variables = fc.option(
      fc.dictionary(
        fc.constantFrom("v", "w", "input", "__proto__", "constructor"),
        fc.jsonValue({ maxDepth: 3 }),
      ),
      { nil: undefined },
    );
    const operationName = fc.option(fc.constantFrom("Op", "Other", ""), { nil: undefined });
    return fc.record({ query: text, variables, operationName });
  }

  it(`answers ${HTTP_RUNS} generated requests over HTTP with data or coded errors, nothing of B's`, async () => {
    const credentials = (): Array<Record<string, string>> => [
      { authorization: `Bearer ${aKey}` },
      { authorization: `Bearer ${aToken}` },
      {},
      { authorization: "Bearer gg_forged" },
    ];
    await fc.assert(
      fc.asyncProperty(
        operation(["query", "mutation", "subscription"]),
        fc.nat({ max: 3 }),
        async (payload, who) => {
          const res = await postRaw(server.url, JSON.stringify(payload), {
            "content-type": "application/json",
            ...credentials()[who],
          });
          expectCleanAnswer(res, secrets);
        },
      ),
      { numRuns: HTTP_RUNS, seed: SEED },
    );
  });

  it(`answers ${WS_RUNS} generated operations over graphql-ws and keeps the connection`, async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(operation(["query", "mutation", "subscription"]), async (payload) => {
        const id = `op${n++}`;
        const clean = { ...payload, operationName: payload.operationName ?? null };
        socket.send({ id, type: "subscribe", payload: clean });
        if (/^\s*subscription\b/.test(payload.query)) {
          // A valid subscription may wait for events that never come: stop it at once.
          socket.send({ id, type: "complete" });
          return;
        }
        const answer = await socket.next((m) => m.id === id || "closed" in m);
        if ("closed" in answer) throw new Error(`socket closed by ${JSON.stringify(payload)}`);
        const text = JSON.stringify(answer);
        expectNoLeak(text, secrets);
        if (answer.type === "error") expectCodedErrors(answer.payload, text);
        else {
          expect(answer.type).toBe("next");
          if (answer.payload.errors) expectCodedErrors(answer.payload.errors, text);
        }
      }),
      { numRuns: WS_RUNS, seed: SEED },
    );
    // Whatever the stopped subscriptions answered was clean too, and the connection lives.
    for (const m of socket.messages) {
      expectNoLeak(JSON.stringify(m), secrets);
      if (m.type === "error") expectCodedErrors(m.payload);
    }
    const ok = await operate(socket, "last", { query: "{ viewer { role } }" });
    expect(ok.payload.data.viewer.role).toBe("PARTNER");
  });
});
