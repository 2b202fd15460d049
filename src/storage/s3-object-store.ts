import {
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import type { ObjectStore } from "./object-store";

export interface S3ObjectStoreOptions {
  bucket: string;
  /** @defaultValue `"us-east-1"` (what MinIO and most S3-compatible services expect) */
  region?: string;
  /**
   * Base URL of an S3-compatible service (MinIO, Cloudflare R2, Backblaze B2, ...).
   * @defaultValue AWS S3 for the region
   */
  endpoint?: string;
  /**
   * `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
   * @defaultValue `true` when `endpoint` is set (MinIO needs it, the others accept it), else `false`
   */
  forcePathStyle?: boolean;
  /**
   * Static credentials; give both or neither.
   * @defaultValue the SDK's chain: environment, shared config files, instance or task role
   */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Folder inside the bucket, so one bucket can serve several deployments. @defaultValue `""` */
  prefix?: string;
}

/** SigV4 refuses presigned URLs valid for longer than seven days. */
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/**
 * Outputs in an S3 bucket (or any S3-compatible service). Clients download through presigned
 * URLs straight from the bucket, so output bytes never go through the api.
 */
export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  private readonly prefix: string;
  private readonly client: S3Client;

  constructor(opts: S3ObjectStoreOptions) {
    if (!opts.bucket) throw new Error("S3ObjectStore needs a bucket name");
    if (Boolean(opts.accessKeyId) !== Boolean(opts.secretAccessKey)) {
      throw new Error(
        "S3 credentials need both an access key id and a secret access key (or neither, " +
          "to use the environment's credentials)",
      );
    }
    if (opts.endpoint !== undefined && !/^https?:\/\//.test(opts.endpoint)) {
      throw new Error(`S3 endpoint must be an http(s) URL, got "${opts.endpoint}"`);
    }
    this.bucket = opts.bucket;
    this.prefix = (opts.prefix ?? "").replace(/^\/+|\/+$/g, "");
    this.client = new S3Client({
      region: opts.region ?? "us-east-1",
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle ?? opts.endpoint !== undefined,
      credentials:
        opts.accessKeyId && opts.secretAccessKey
          ? { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey }
          : undefined,
      // Recent SDKs add CRC32 checksums to every upload by default, which several
      // S3-compatible services reject; S3 itself does not need them for a plain PUT.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  }

  async put(key: string, data: Buffer, contentType: string): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.objectKey(key),
        Body: data,
        ContentType: contentType,
        ContentLength: data.length,
      }),
    );
  }

  async get(key: string): Promise<{ data: Buffer; contentType: string } | null> {
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      );
      if (!res.Body) return null;
      const data = Buffer.from(await res.Body.transformToByteArray());
      return { data, contentType: res.ContentType ?? "application/octet-stream" };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** A presigned GET URL: signed locally, no request to the bucket. */
  async signedUrl(key: string, ttlSeconds: number): Promise<string> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_PRESIGN_SECONDS) {
      throw new RangeError(
        `presigned URLs last 1 to ${MAX_PRESIGN_SECONDS} seconds, got ${ttlSeconds}`,
      );
    }
    return getSignedUrl(
      this.client,
      new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      { expiresIn: ttlSeconds },
    );
  }

  /** Releases the client's sockets (at shutdown). */
  close(): void {
    this.client.destroy();
  }

  private objectKey(key: string): string {
    // S3 keys are opaque, but the local store refuses these; refusing them here too keeps
    // keys portable between the two stores.
    if (!key || key.startsWith("/") || key.split("/").some((s) => s === ".." || s === "")) {
      throw new Error(`invalid object key "${key}"`);
    }
    return this.prefix ? `${this.prefix}/${key}` : key;
  }
}

function isNotFound(err: unknown): boolean {
  // A missing bucket is misconfiguration, not a missing output: it must not read as null.
  if (!(err instanceof S3ServiceException) || err.name === "NoSuchBucket") return false;
  return err.name === "NoSuchKey" || err.$metadata.httpStatusCode === 404;
}
