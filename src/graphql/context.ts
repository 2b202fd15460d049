import type { Viewer } from "../auth/viewer";
import type { Services } from "../app/services";

/** Per request (HTTP) or per connection (WebSocket). */
export interface GraphQLContext {
  viewer: Viewer | null;
  services: Services;
}
