import {
  GraphQLNonNull,
  GraphQLObjectType,
  GraphQLSchema,
  GraphQLString,
  parse,
  type ExecutionResult,
} from "graphql";
import { PushIterator } from "../../src/infra/pubsub/pubsub";
import { sharedSubscribe } from "../../src/graphql/shared-subscribe";

interface Tick {
  value: string;
}

/**
 * A schema whose one subscription streams what the test pushes, and whose field counts its
 * executions and says which context ran it.
 */
function world() {
  const sources: Array<PushIterator<Tick>> = [];
  let executions = 0;
  const Tick = new GraphQLObjectType({
    name: "Tick",
    fields: {
      value: { type: new GraphQLNonNull(GraphQLString) },
      seenBy: {
        type: GraphQLString,
        resolve: (_tick, _args, context: { who: string }) => {
          executions++;
          return context.who;
        },
      },
    },
  });
  const schema = new GraphQLSchema({
    query: new GraphQLObjectType({ name: "Query", fields: { ok: { type: GraphQLString } } }),
    subscription: new GraphQLObjectType({
      name: "Subscription",
      fields: {
        ticks: {
          type: new GraphQLNonNull(Tick),
          subscribe: () => {
            const it = new PushIterator<Tick>(Promise.resolve(), () => undefined);
            sources.push(it);
            return it;
          },
          resolve: (tick: Tick) => tick,
        },
      },
    }),
  });
  const counted: Array<[executed: number, shared: number]> = [];
  const subscribe = sharedSubscribe(schema, {
    contextKey: (context) => (context as { who: string; key: string | null }).key,
    onResults: (executed, shared) => counted.push([executed, shared]),
  });
  const open = async (
    who: string,
    key: string | null,
    query = "subscription { ticks { value seenBy } }",
  ) => {
    const stream = await subscribe({ schema, document: parse(query), contextValue: { who, key } });
    return stream as AsyncIterableIterator<ExecutionResult>;
  };
  return {
    open,
    sources,
    counted,
    executions: () => executions,
    publish: (tick: Tick) => sources.forEach((s) => s.push(tick)),
  };
}

/** Past the turn of the event loop that executed an event, when its results are forgotten. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("sharedSubscribe", () => {
  it("executes an event once for operations with the same document and context key", async () => {
    expect.assertions(5);
    const w = world();
    const streams = await Promise.all([w.open("a", "k"), w.open("b", "k"), w.open("c", "k")]);
    const next = streams.map((s) => s.next());
    w.publish({ value: "1" });
    const results = await Promise.all(next);

    await nextTurn();
    expect(w.executions()).toBe(1);
    expect(w.counted).toEqual([[1, 2]]);
    // Whoever executed it, every operation gets that one result.
    for (const r of results)
      expect(r).toEqual({ value: { data: { ticks: { value: "1", seenBy: "a" } } }, done: false });
  });

  it("executes again for another context key, another document, or no key at all", async () => {
    expect.assertions(3);
    const w = world();
    const streams = await Promise.all([
      w.open("a", "k"),
      w.open("b", "other"),
      w.open("c", "k", "subscription { ticks { seenBy } }"),
      w.open("d", null),
      w.open("e", null),
    ]);
    const next = streams.map((s) => s.next());
    w.publish({ value: "1" });
    const results = (await Promise.all(next)).map((r) => r.value as ExecutionResult);

    await nextTurn();
    expect(w.executions()).toBe(5);
    expect(w.counted).toEqual([
      [1, 0],
      [1, 0],
      [3, 0],
    ]);
    expect(results.map((r) => (r.data as { ticks: { seenBy: string } }).ticks.seenBy)).toEqual([
      "a",
      "b",
      "c",
      "d",
      "e",
    ]);
  });

  it("forgets a result after the turn of the event loop that executed it", async () => {
    expect.assertions(3);
    const w = world();
    const [first, late] = await Promise.all([w.open("a", "k"), w.open("b", "k")]);
    const tick = { value: "1" };
    const firstResult = first.next();
    w.publish(tick);
    await firstResult;
    await nextTurn();

    // `late` reads the same event object only now: it executes it itself.
    const lateResult = await late.next();
    await nextTurn();
    expect(w.executions()).toBe(2);
    expect(w.counted).toEqual([
      [1, 0],
      [1, 0],
    ]);
    expect(lateResult.value).toEqual({ data: { ticks: { value: "1", seenBy: "b" } } });
  });

  it("ends the source stream when the operation ends", async () => {
    expect.assertions(2);
    const w = world();
    const stream = await w.open("a", "k");
    await stream.return!();
    expect(w.sources[0]!.closed).toBe(true);
    expect(await stream.next()).toEqual({ value: undefined, done: true });
  });

  it("returns the errors of an operation that cannot subscribe instead of a stream", async () => {
    expect.assertions(1);
    const w = world();
    const result = (await w.open("a", "k", "subscription { nope }")) as unknown as ExecutionResult;
    expect(result.errors?.map((e) => e.message)).toEqual([
      'The subscription field "nope" is not defined.',
    ]);
  });
});
