import {
  createSourceEventStream,
  execute,
  print,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLSchema,
} from "graphql";

type PromiseOrValue<T> = T | Promise<T>;

export interface SharedSubscribeOptions {
  /**
   * What of an operation's context its result may depend on, as a string: operations share a
   * result only when theirs are equal. `null` keeps the operation's results its own.
   */
  contextKey(contextValue: unknown): string | null;
  /**
   * Told, for each event, how many operations it was executed for and how many reused one of
   * those results: once the event's results are forgotten (one call per event, not one per
   * operation: with thousands of subscribers, counting each costs more than sharing saves).
   */
  onResults?(executed: number, shared: number): void;
}

/**
 * graphql-js's `subscribe`, except that one event's result is executed once for every
 * operation that would get the same one: the same event object (the pub/sub hands one parsed
 * message to all its local subscribers), the same document, operation name and variables, and
 * the same context as `contextKey` sees it. The rest stays per operation: its source stream
 * (and the filtering done there), and what the server makes of the result (error formatting,
 * the message, the send).
 *
 * A result is remembered for the turn of the event loop that executed it: the pub/sub hands an
 * event to every stream at once, and each stream passes it on within the microtasks that
 * follow, so that is when the others ask. A stream that was still busy sending the previous
 * event and reads this one later executes it again, as every stream did before: a result is
 * never reused once it could be stale (a signed link, a queue position). A result is shared
 * as it is, so nothing downstream may mutate it (graphql-ws and our `onNext` build new
 * objects).
 *
 * Sharing relies on what resolvers do with an event: nothing that depends on which operation
 * asked (beyond what `contextKey` covers) and no side effects. That holds for every
 * subscription field of the schema: each maps its event to its type (GenerationEvent,
 * ProviderHealth, Alert), and the only field resolvers below them, `Generation.outputs` and
 * `Generation.queuePosition`, read a signed link and a count without writing anything or
 * looking at the viewer.
 */
export function sharedSubscribe(
  schema: GraphQLSchema,
  options: SharedSubscribeOptions,
): (args: ExecutionArgs) => Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  // Per event object, and per operation as `sharingKey` names it; emptied each turn (above).
  const remembered = new WeakMap<object, EventResults>();
  const run = (args: ExecutionArgs, event: unknown) => execute({ ...args, rootValue: event });
  const forget = (event: object) => {
    const entry = remembered.get(event);
    remembered.delete(event);
    if (entry) options.onResults?.(entry.results.size, entry.shared);
  };

  return async (args) => {
    const stream = await createSourceEventStream(args);
    if (!isAsyncIterable(stream)) return stream;
    const key = sharingKey(args);
    return mapAsyncIterator(stream, (event) => {
      // Only an object can be the same event for several streams.
      if (key === null || typeof event !== "object" || event === null) {
        options.onResults?.(1, 0);
        return run(args, event);
      }
      let entry = remembered.get(event);
      if (!entry) {
        remembered.set(event, (entry = { results: new Map(), shared: 0 }));
        setImmediate(forget, event);
      }
      const known = entry.results.get(key);
      if (known !== undefined) {
        entry.shared++;
        return known;
      }
      const result = run(args, event);
      entry.results.set(key, result);
      return result;
    });
  };

  function sharingKey(args: ExecutionArgs): string | null {
    // Executed by another schema or other default resolvers, a result may differ.
    if (args.schema !== schema || args.fieldResolver || args.typeResolver) return null;
    const context = options.contextKey(args.contextValue);
    if (context === null) return null;
    return JSON.stringify([
      // Once per operation: each parsed its own document.
      print(args.document),
      args.operationName ?? null,
      args.variableValues ?? null,
      context,
    ]);
  }
}

interface EventResults {
  /** By sharing key: each executed once. */
  results: Map<string, PromiseOrValue<ExecutionResult>>;
  /** How many times one of them was handed to another operation. */
  shared: number;
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function"
  );
}

/** graphql-js's own (internal) mapAsyncIterator: `return()` and `throw()` reach the source. */
function mapAsyncIterator<T, U>(
  iterable: AsyncIterable<T>,
  map: (value: T) => PromiseOrValue<U>,
): AsyncIterableIterator<U> {
  const iterator = iterable[Symbol.asyncIterator]();
  const closeQuietly = async () => {
    try {
      await iterator.return?.();
    } catch {
      // Keep the error that made us close it.
    }
  };
  const mapResult = async (result: IteratorResult<T>): Promise<IteratorResult<U>> => {
    if (result.done) return result as IteratorReturnResult<unknown> as IteratorResult<U>;
    try {
      return { value: await map(result.value), done: false };
    } catch (err) {
      await closeQuietly();
      throw err;
    }
  };
  const mapped: AsyncIterableIterator<U> = {
    async next() {
      return mapResult(await iterator.next());
    },
    async return() {
      return iterator.return
        ? mapResult(await iterator.return())
        : { value: undefined, done: true };
    },
    async throw(err: unknown) {
      if (iterator.throw) return mapResult(await iterator.throw(err));
      await closeQuietly();
      throw err;
    },
    [Symbol.asyncIterator]() {
      return mapped;
    },
  };
  return mapped;
}
