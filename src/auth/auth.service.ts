import { createHash, randomBytes } from "node:crypto";
import jwt from "jsonwebtoken";
import type { AccountEntity, ApiKeyEntity, KeyRole } from "../entities";
import {
  BadInputError,
  ForbiddenError,
  NotFoundError,
  UnauthenticatedError,
} from "../common/errors";
import { assertStorableText } from "../common/text";
import { ApiKeyCache } from "./api-key.cache";
import type { ApiKeyRepository } from "./api-key.repository";
import { requireRole, type Viewer } from "./viewer";

const KEY_PREFIX = "gg_";
const TOKEN_ISSUER = "gengate";
const TOKEN_AUDIENCE = "gengate-client";
export const MAX_CLIENT_TOKEN_TTL_SECONDS = 24 * 3600;
export const DEFAULT_CLIENT_TOKEN_TTL_SECONDS = 3600;
export const OPERATORS_ACCOUNT = "operators";

interface ClientTokenClaims {
  sub: string;
  acc: string;
  gen?: boolean;
}

export interface IssuedKey {
  apiKey: ApiKeyEntity;
  key: string;
}

/**
 * API keys (stored as SHA-256, shown once) and client tokens (HS256 JWTs for one end user).
 * Keys are 32 random bytes, so a fast hash is enough: there is nothing to brute-force.
 */
export class AuthService {
  constructor(
    private readonly keys: ApiKeyRepository,
    private readonly tokenSecret: string,
    /** Keys found recently: every request authenticates, most with a key seen a moment ago. */
    private readonly keyCache = new ApiKeyCache(),
    /** Tells the other processes a key was revoked, so that they forget it too. */
    private readonly broadcastRevoked: (keyId: string) => Promise<void> = async () => undefined,
  ) {}

  /** The viewer behind an `Authorization` header value, or null when none was given. */
  async authenticate(authorization: string | undefined | null): Promise<Viewer | null> {
    if (!authorization) return null;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) throw new UnauthenticatedError("Authorization must be `Bearer <key or token>`");
    const credential = match[1]!;
    if (credential.startsWith(KEY_PREFIX)) {
      const key = await this.keyCache.get(hashKey(credential), () =>
        this.keys.findActiveByHash(hashKey(credential)),
      );
      if (!key) throw new UnauthenticatedError("Unknown or revoked API key");
      return { role: key.role, accountId: key.accountId, apiKeyId: key.id, canGenerate: true };
    }
    return this.verifyClientToken(credential);
  }

  async createAccount(
    viewer: Viewer | null,
    name: string,
  ): Promise<{ account: AccountEntity } & IssuedKey> {
    requireRole(viewer, "ADMIN");
    assertStorableText("name", name);
    const trimmed = name.trim();
    if (!trimmed || trimmed.length > 200)
      throw new BadInputError("name", "must be 1 to 200 characters");
    const { key, hash, prefix } = newKey();
    const { account, apiKey } = await this.keys.createAccountWithKey(trimmed, {
      role: "PARTNER",
      label: "first key",
      keyHash: hash,
      keyPrefix: prefix,
    });
    return { account, apiKey, key };
  }

  async createApiKey(
    viewer: Viewer | null,
    role: KeyRole,
    label: string | undefined | null,
    accountId: string | undefined | null,
  ): Promise<IssuedKey> {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    if (role === "ADMIN" && v.role !== "ADMIN")
      throw new ForbiddenError("Only an ADMIN key can create ADMIN keys");
    if (accountId && accountId !== v.accountId && v.role !== "ADMIN") {
      throw new ForbiddenError("A PARTNER key creates keys for its own account only");
    }
    assertStorableText("label", label);
    if (label != null && label.length > 200)
      throw new BadInputError("label", "must be at most 200 characters");
    const target = accountId ?? v.accountId;
    if (!isUuid(target) || !(await this.keys.findAccount(target))) {
      throw new NotFoundError("No such account");
    }
    return this.issueKey(target, role, label ?? null);
  }

  async revokeApiKey(viewer: Viewer | null, id: string): Promise<boolean> {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    if (!isUuid(id)) throw new NotFoundError("No such API key");
    const revoked = await this.keys.revoke(id, v.role === "ADMIN" ? undefined : v.accountId);
    if (!revoked) throw new NotFoundError("No such API key");
    this.forgetKey(id);
    // A lost broadcast leaves the key usable elsewhere for the cache's TTL at most.
    await this.broadcastRevoked(id).catch(() => undefined);
    return true;
  }

  /** A key was revoked (here or in another process): it is read from Postgres again. */
  forgetKey(keyId: string): void {
    this.keyCache.forget(keyId);
  }

  createClientToken(
    viewer: Viewer | null,
    userId: string,
    ttlSeconds: number | undefined | null,
    canGenerate: boolean | undefined | null,
  ): { token: string; expiresAt: Date } {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    validateUserId(userId);
    const ttl = ttlSeconds ?? DEFAULT_CLIENT_TOKEN_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_CLIENT_TOKEN_TTL_SECONDS) {
      throw new BadInputError(
        "ttlSeconds",
        `must be an integer from 1 to ${MAX_CLIENT_TOKEN_TTL_SECONDS}`,
      );
    }
    const claims: ClientTokenClaims = { sub: userId, acc: v.accountId, gen: canGenerate === true };
    // One clock reading for the token and the answer: read twice, they could fall on either
    // side of a second and disagree.
    const exp = Math.floor(Date.now() / 1000) + ttl;
    const token = jwt.sign({ ...claims, exp }, this.tokenSecret, {
      algorithm: "HS256",
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
    });
    return { token, expiresAt: new Date(exp * 1000) };
  }

  /** For the CLI: a key for the operators' account. */
  async issueOperatorKey(role: KeyRole, label: string | null): Promise<IssuedKey> {
    const account = await this.keys.findOrCreateAccount(OPERATORS_ACCOUNT);
    return this.issueKey(account.id, role, label);
  }

  /** A first ADMIN key when none exists yet (the embedded default's first start); else null. */
  async bootstrapAdminKey(): Promise<IssuedKey | null> {
    if ((await this.keys.countActiveKeys("ADMIN")) > 0) return null;
    return this.issueOperatorKey("ADMIN", "bootstrap");
  }

  async accountOf(viewer: Viewer): Promise<AccountEntity | null> {
    return this.keys.findAccount(viewer.accountId);
  }

  private async issueKey(
    accountId: string,
    role: KeyRole,
    label: string | null,
  ): Promise<IssuedKey> {
    const { key, hash, prefix } = newKey();
    const apiKey = await this.keys.createKey({
      accountId,
      role,
      label,
      keyHash: hash,
      keyPrefix: prefix,
    });
    return { apiKey, key };
  }

  private verifyClientToken(token: string): Viewer {
    try {
      const claims = jwt.verify(token, this.tokenSecret, {
        algorithms: ["HS256"],
        issuer: TOKEN_ISSUER,
        audience: TOKEN_AUDIENCE,
      }) as ClientTokenClaims;
      if (typeof claims.sub !== "string" || typeof claims.acc !== "string")
        throw new Error("claims");
      return {
        role: "CLIENT",
        accountId: claims.acc,
        userId: claims.sub,
        canGenerate: claims.gen === true,
      };
    } catch (err) {
      const expired = err instanceof jwt.TokenExpiredError;
      throw new UnauthenticatedError(expired ? "Client token expired" : "Invalid credential");
    }
  }
}

export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

function newKey(): { key: string; hash: string; prefix: string } {
  const key = `${KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
  return { key, hash: hashKey(key), prefix: key.slice(0, 10) };
}

export function validateUserId(userId: string): void {
  assertStorableText("userId", userId);
  if (
    typeof userId !== "string" ||
    userId.length === 0 ||
    userId.length > 200 ||
    userId.trim() !== userId
  ) {
    throw new BadInputError("userId", "must be 1 to 200 characters without surrounding spaces");
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(value: string): boolean {
  return UUID.test(value);
}
