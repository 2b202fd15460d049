import type { Viewer } from "../auth/viewer";
import type { Services } from "../app/services";

/** Per request (HTTP) or per connection (WebSocket). */
export interface GraphQLContext {
  viewer: Viewer | null;
  services: Services;
}

/**
 * What of a context a field's result may depend on, for operations that share one execution
 * (see `sharedSubscribe`): results may be shared between contexts with the same key. No
 * resolver under a subscription reads the viewer today; keying on all of it (every field, so
 * one added later counts too) keeps a resolver that starts to correct without a second thought.
 * `services` is the process's, the same in every context.
 */
export function contextSharingKey(context: GraphQLContext): string {
  const v = context.viewer;
  if (!v) return "anonymous";
  return JSON.stringify(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
