import type { ApolloServerPlugin } from "@apollo/server";
import {
  GraphQLError,
  Kind,
  getNullableType,
  getOperationAST,
  isListType,
  parse,
  specifiedRules,
  validate,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  type SelectionSetNode,
  type ValidationRule,
} from "graphql";
import {
  fieldExtensionsEstimator,
  getComplexity,
  simpleEstimator,
  type ComplexityEstimator,
} from "graphql-query-complexity";

/** What a single GraphQL operation may cost, over HTTP and over the WebSocket alike. */
export interface QueryLimits {
  /** Nesting of fields, fragments followed (MAX_QUERY_DEPTH). */
  maxDepth: number;
  /** Estimated cost (MAX_QUERY_COMPLEXITY); see `complexityEstimators`. */
  maxComplexity: number;
  /** Lexical tokens in the document, checked while parsing (MAX_QUERY_TOKENS). */
  maxTokens: number;
}

/** Length assumed for a list field that takes no `first` argument. */
export const ASSUMED_LIST_LENGTH = 10;

/**
 * Refuses operations nested deeper than `max` fields. Fragments count where they are spread;
 * each fragment's depth is computed once, so a document of fragments spreading fragments costs
 * linear time, and a cycle (refused by graphql's own NoFragmentCyclesRule) ends the walk.
 */
export function depthLimitRule(max: number): ValidationRule {
  return (context) => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const def of context.getDocument().definitions) {
      if (def.kind === Kind.FRAGMENT_DEFINITION) fragments.set(def.name.value, def);
    }
    const fragmentDepth = new Map<string, number>();
    const visiting = new Set<string>();

    const depthOf = (set: SelectionSetNode): number => {
      let deepest = 0;
      for (const s of set.selections) {
        let d = 0;
        if (s.kind === Kind.FIELD) d = 1 + (s.selectionSet ? depthOf(s.selectionSet) : 0);
        else if (s.kind === Kind.INLINE_FRAGMENT) d = depthOf(s.selectionSet);
        else {
          const name = s.name.value;
          const known = fragmentDepth.get(name);
          if (known !== undefined) d = known;
          else {
            const fragment = fragments.get(name);
            if (fragment && !visiting.has(name)) {
              visiting.add(name);
              d = depthOf(fragment.selectionSet);
              visiting.delete(name);
              fragmentDepth.set(name, d);
            }
          }
        }
        if (d > deepest) deepest = d;
      }
      return deepest;
    };

    return {
      OperationDefinition(node) {
        const depth = depthOf(node.selectionSet);
        if (depth > max) {
          context.reportError(
            new GraphQLError(`The operation is ${depth} fields deep; at most ${max} are allowed`, {
              nodes: [node],
              extensions: { limit: "MAX_QUERY_DEPTH", max, actual: depth },
            }),
          );
        }
      },
    };
  };
}

/**
 * A field with a `first` argument costs its selection times `first` (what it may return); a
 * list field without one, its selection times ASSUMED_LIST_LENGTH. Introspection fields cost
 * one each: their lists are the schema's, bounded. Fields may say otherwise
 * with a `complexity` of their own (type-graphql's option, read by fieldExtensionsEstimator):
 * a connection's `edges` are already counted by its `first`.
 */
const listEstimator: ComplexityEstimator = ({ type, field, args, childComplexity }) => {
  // Introspection is as large as the schema, whatever is asked: one per field.
  if (type.name.startsWith("__") || field.name.startsWith("__")) return undefined;
  if (field.args.some((a) => a.name === "first")) {
    const first = typeof args.first === "number" && args.first > 0 ? args.first : null;
    return 1 + childComplexity * (first ?? ASSUMED_LIST_LENGTH);
  }
  if (isListType(getNullableType(field.type))) {
    return 1 + childComplexity * ASSUMED_LIST_LENGTH;
  }
  return undefined;
};

export const complexityEstimators: ComplexityEstimator[] = [
  fieldExtensionsEstimator(),
  listEstimator,
  simpleEstimator({ defaultComplexity: 1 }),
];

/** The estimated cost of the operation; GraphQLErrors for variables that do not fit it. */
export function operationComplexity(
  schema: GraphQLSchema,
  document: DocumentNode,
  variables: Record<string, unknown> | null | undefined,
  operationName: string | null | undefined,
): number {
  // The library compares the name with every operation's, and an anonymous one has none.
  const operation = getOperationAST(document, operationName ?? undefined);
  return getComplexity({
    schema,
    query: document,
    variables: variables ?? {},
    operationName: operation?.name?.value,
    estimators: complexityEstimators,
  });
}

function complexityError(max: number, actual: number): GraphQLError {
  return new GraphQLError(
    `The operation's estimated cost is ${actual}; at most ${max} is allowed`,
    {
      extensions: {
        code: "GRAPHQL_VALIDATION_FAILED",
        limit: "MAX_QUERY_COMPLEXITY",
        max,
        actual,
      },
    },
  );
}

/**
 * Null when the operation is within `max`; else why not: its cost, too many nodes to cost
 * (GRAPHQL_VALIDATION_FAILED), or variables that do not fit it (BAD_USER_INPUT, what
 * execution would have answered).
 */
function costError(
  schema: GraphQLSchema,
  document: DocumentNode,
  variables: Record<string, unknown> | null | undefined,
  operationName: string | null | undefined,
  max: number,
): GraphQLError | null {
  let actual: number;
  try {
    actual = operationComplexity(schema, document, variables, operationName);
  } catch (err) {
    if (!(err instanceof GraphQLError)) throw err;
    const tooLarge = /maximum allowed number of nodes/.test(err.message);
    return withCode(err, tooLarge ? "GRAPHQL_VALIDATION_FAILED" : "BAD_USER_INPUT");
  }
  return actual > max ? complexityError(max, actual) : null;
}

/** The cost check for Apollo: after the operation is parsed, validated and chosen, before it runs. */
export function complexityPlugin(maxComplexity: number): ApolloServerPlugin {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ schema, document, request, operationName }) {
          const error = costError(
            schema,
            document,
            request.variables,
            operationName,
            maxComplexity,
          );
          if (error) {
            throw new GraphQLError(error.message, {
              nodes: error.nodes,
              extensions: { ...error.extensions, http: { status: 400 } },
            });
          }
        },
      };
    },
  };
}

/**
 * What Apollo does for an HTTP request, for an operation arriving over graphql-ws: parse
 * within the token limit, validate (graphql's rules and the depth limit), check the cost.
 * Returns the document, or the errors to send back with their codes.
 */
export function checkOperation(
  schema: GraphQLSchema,
  payload: {
    query: string;
    variables?: Record<string, unknown> | null;
    operationName?: string | null;
  },
  limits: QueryLimits,
): { document: DocumentNode } | { errors: GraphQLError[] } {
  let document: DocumentNode;
  try {
    document = parse(payload.query, { maxTokens: limits.maxTokens });
  } catch (err) {
    if (!(err instanceof GraphQLError)) throw err;
    return { errors: [withCode(err, "GRAPHQL_PARSE_FAILED")] };
  }
  let invalid: readonly GraphQLError[];
  try {
    invalid = validate(schema, document, [...specifiedRules, depthLimitRule(limits.maxDepth)]);
  } catch (err) {
    // graphql's SingleFieldSubscriptionsRule evaluates @skip/@include and throws on a bad one.
    if (!(err instanceof GraphQLError)) throw err;
    invalid = [err];
  }
  if (invalid.length > 0) {
    return { errors: invalid.map((e) => withCode(e, "GRAPHQL_VALIDATION_FAILED")) };
  }
  if (!getOperationAST(document, payload.operationName ?? undefined)) {
    const error = payload.operationName
      ? `Unknown operation named "${payload.operationName}"`
      : "Must provide operation name if query contains multiple operations";
    return {
      errors: [new GraphQLError(error, { extensions: { code: "OPERATION_RESOLUTION_FAILURE" } })],
    };
  }
  const error = costError(
    schema,
    document,
    payload.variables,
    payload.operationName,
    limits.maxComplexity,
  );
  return error ? { errors: [error] } : { document };
}

function withCode(error: GraphQLError, code: string): GraphQLError {
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    extensions: { ...error.extensions, code: error.extensions.code ?? code },
  });
}
