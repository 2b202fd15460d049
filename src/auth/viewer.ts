import { ForbiddenError, UnauthenticatedError } from "../common/errors";
import type { AccessScope } from "../generation/generation.repository";

export type ViewerRole = "ADMIN" | "PARTNER" | "CLIENT";

/** Who is calling: resolved once per request or WebSocket connection. */
export interface Viewer {
  role: ViewerRole;
  accountId: string;
  apiKeyId?: string;
  /** For a client token: the one end user it acts for. */
  userId?: string;
  /** For a client token: whether the partner allowed it to create generations. */
  canGenerate: boolean;
}

export function requireViewer(viewer: Viewer | null | undefined): Viewer {
  if (!viewer) throw new UnauthenticatedError();
  return viewer;
}

export function requireRole(viewer: Viewer | null | undefined, ...roles: ViewerRole[]): Viewer {
  const v = requireViewer(viewer);
  if (!roles.includes(v.role)) {
    throw new ForbiddenError(`This operation needs a ${roles.join(" or ")} credential`);
  }
  return v;
}

/**
 * What generations a viewer may see. ADMIN sees every account, or the one it names;
 * PARTNER its own account; a client token one end user of one account.
 */
export function generationScope(viewer: Viewer, accountId?: string): AccessScope {
  switch (viewer.role) {
    case "ADMIN":
      return accountId ? { accountId } : {};
    case "PARTNER":
      return { accountId: viewer.accountId };
    case "CLIENT":
      return { accountId: viewer.accountId, userId: viewer.userId };
  }
}
