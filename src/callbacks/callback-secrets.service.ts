import { isUuid } from "../auth/auth.service";
import { requireRole, type Viewer } from "../auth/viewer";
import { ForbiddenError, NotFoundError } from "../common/errors";

/** Who may read an account's callback signing secret: its PARTNER keys, and ADMIN. */
export class CallbackSecretsService {
  constructor(private readonly source: { secretFor(accountId: string): Promise<string | null> }) {}

  async secret(viewer: Viewer | null, accountId?: string | null): Promise<string> {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    if (accountId != null && v.role !== "ADMIN")
      throw new ForbiddenError("Only ADMIN may name an account");
    const target = accountId ?? v.accountId;
    const secret = isUuid(target) ? await this.source.secretFor(target) : null;
    if (!secret) throw new NotFoundError("No such account");
    return secret;
  }
}
