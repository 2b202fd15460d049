import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { contentTypeForPath } from "../common/media-types";

/**
 * Durable storage for outputs (provider URLs expire). Keys are relative paths such as
 * `generations/<id>/1-0.png`, `/`-separated, never starting with `/` nor containing `..`.
 *
 * The contract: `put` is atomic and idempotent (a reader sees the whole object or none, and
 * two writers of one key with the same bytes both succeed); `get` returns the bytes and the
 * content type they were stored with, or `null` when the key is missing (any other failure
 * throws). `signedUrl`, when a store has it, is an expiring GET link that clients can use
 * directly (an S3 presigned URL); a store without it is served by the api at `/files/...`
 * through `OutputUrlSigner`. Left out deliberately: listing and deletion (retention is the
 * bucket's lifecycle rules or an operator's job), and range reads.
 */
export interface ObjectStore {
  put(key: string, data: Buffer, contentType: string): Promise<void>;
  get(key: string): Promise<{ data: Buffer; contentType: string } | null>;
  /** A link that downloads `key` without credentials until `ttlSeconds` from now. */
  signedUrl?(key: string, ttlSeconds: number): Promise<string>;
}

export { extensionFor } from "../common/media-types";

/** Files under one folder (shared by api and workers through a volume when they are apart). */
export class LocalObjectStore implements ObjectStore {
  constructor(private readonly root: string) {}

  async put(key: string, data: Buffer, _contentType: string): Promise<void> {
    const file = this.resolve(key);
    await fs.mkdir(path.dirname(file), { recursive: true });
    // Write then rename, so a reader never sees half a file.
    // Unique, since two finishers of one generation may store the same key at once.
    const tmp = `${file}.${randomBytes(8).toString("hex")}.tmp`;
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
  }

  async get(key: string): Promise<{ data: Buffer; contentType: string } | null> {
    try {
      const data = await fs.readFile(this.resolve(key));
      return { data, contentType: contentTypeForPath(key) ?? "application/octet-stream" };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  private resolve(key: string): string {
    const root = path.resolve(this.root);
    const file = path.resolve(root, key);
    if (!file.startsWith(root + path.sep)) throw new Error("object key escapes the store");
    return file;
  }
}

/** Expiring links to stored outputs: HMAC over the key and the expiry time. */
export class OutputUrlSigner {
  constructor(
    /** Public base URL of the api; follows the real port when the api listens on port 0. */
    public baseUrl: string,
    private readonly secret: string,
    private readonly ttlSeconds: number,
  ) {}

  sign(key: string, now = Date.now()): string {
    const expires = Math.floor(now / 1000) + this.ttlSeconds;
    return `${this.baseUrl}/files/${key}?expires=${expires}&sig=${this.mac(key, expires)}`;
  }

  verify(
    key: string,
    expires: string | undefined,
    sig: string | undefined,
    now = Date.now(),
  ): boolean {
    const exp = Number(expires);
    if (!Number.isInteger(exp) || exp * 1000 < now || typeof sig !== "string") return false;
    const expected = Buffer.from(this.mac(key, exp));
    const given = Buffer.from(sig);
    return expected.length === given.length && timingSafeEqual(expected, given);
  }

  private mac(key: string, expires: number): string {
    return createHmac("sha256", this.secret).update(`${key}\n${expires}`).digest("base64url");
  }
}
