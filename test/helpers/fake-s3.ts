import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

/** The only credentials the fake accepts. */
export const FAKE_S3_CREDENTIALS = {
  accessKeyId: "AKIAGENGATETEST00000",
  secretAccessKey: "gengate-fake-s3-secret-key",
  region: "us-east-1",
} as const;

export interface FakeS3Object {
  data: Buffer;
  contentType: string;
}

export interface FakeS3 {
  /** Endpoint for the SDK (path-style: `${url}/${bucket}/${key}`). */
  url: string;
  bucket: string;
  /** Stored objects by key (without the bucket). */
  objects: Map<string, FakeS3Object>;
  /** Clock that judges presigned URL expiry: tests move it forward instead of sleeping. */
  now: () => number;
  close(): Promise<void>;
}

/**
 * A tiny S3-compatible server for tests: path-style PUT, GET and HEAD of objects in one
 * bucket, S3's XML error bodies, and full AWS Signature V4 verification (Authorization header
 * or presigned query) against `FAKE_S3_CREDENTIALS`, including the presigned URL's expiry.
 * Left out: virtual-hosted-style addressing, multipart uploads, aws-chunked (streaming)
 * payloads, listing, deletion, and the clock-skew check on signed headers.
 */
export async function startFakeS3(opts: { bucket?: string } = {}): Promise<FakeS3> {
  const bucket = opts.bucket ?? "gengate-test";
  const objects = new Map<string, FakeS3Object>();
  const fake: FakeS3 = {
    url: "",
    bucket,
    objects,
    now: () => Date.now(),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        handle(req, Buffer.concat(chunks), res);
      } catch (err) {
        sendError(res, 500, "InternalError", (err as Error).message, req.url ?? "");
      }
    });
  });

  function handle(req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): void {
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const query = parseQuery(q === -1 ? "" : rawUrl.slice(q + 1));

    const denied = verifySignature(req, rawPath, query, body, fake.now());
    if (denied) return sendError(res, 403, denied.code, denied.message, rawPath);

    const [, rawBucket = "", ...rawKey] = rawPath.split("/");
    if (decodeURIComponent(rawBucket) !== bucket) {
      return sendError(res, 404, "NoSuchBucket", "The specified bucket does not exist", rawPath);
    }
    const key = rawKey.map(decodeURIComponent).join("/");
    if (!key) return sendError(res, 501, "NotImplemented", "bucket operations", rawPath);
    const unsupported = query.find(([k]) => k !== "x-id" && !k.startsWith("X-Amz-"));
    if (unsupported) return sendError(res, 501, "NotImplemented", unsupported[0], rawPath);

    switch (req.method) {
      case "PUT": {
        const contentType = req.headers["content-type"] ?? "binary/octet-stream";
        objects.set(key, { data: body, contentType });
        res.writeHead(200, { etag: `"${createHash("md5").update(body).digest("hex")}"` });
        res.end();
        return;
      }
      case "GET":
      case "HEAD": {
        const object = objects.get(key);
        if (!object) {
          return sendError(res, 404, "NoSuchKey", "The specified key does not exist.", rawPath);
        }
        res.writeHead(200, {
          "content-type": object.contentType,
          "content-length": object.data.length,
        });
        res.end(req.method === "GET" ? object.data : undefined);
        return;
      }
      default:
        sendError(res, 405, "MethodNotAllowed", `${req.method} is not allowed`, rawPath);
    }
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}

interface Denial {
  code: string;
  message: string;
}

/** Recomputes the SigV4 signature the way S3 does; returns why it is refused, if it is. */
function verifySignature(
  req: http.IncomingMessage,
  rawPath: string,
  query: [string, string][],
  body: Buffer,
  now: number,
): Denial | undefined {
  const param = (name: string) => query.find(([k]) => k === name)?.[1];
  const presigned = param("X-Amz-Signature") !== undefined;
  let credential: string;
  let signedHeaders: string;
  let signature: string;
  let amzDate: string;
  let payloadHash: string;

  if (presigned) {
    if (param("X-Amz-Algorithm") !== "AWS4-HMAC-SHA256") {
      return { code: "AuthorizationQueryParametersError", message: "unsupported algorithm" };
    }
    credential = param("X-Amz-Credential") ?? "";
    signedHeaders = param("X-Amz-SignedHeaders") ?? "";
    signature = param("X-Amz-Signature") ?? "";
    amzDate = param("X-Amz-Date") ?? "";
    const expires = Number(param("X-Amz-Expires"));
    if (!Number.isInteger(expires) || expires < 1 || expires > 604800) {
      return { code: "AuthorizationQueryParametersError", message: "bad X-Amz-Expires" };
    }
    if (parseAmzDate(amzDate) + expires * 1000 < now) {
      return { code: "AccessDenied", message: "Request has expired" };
    }
    payloadHash = "UNSIGNED-PAYLOAD";
  } else {
    const auth = req.headers.authorization;
    if (!auth) return { code: "AccessDenied", message: "Anonymous access is not allowed" };
    const m =
      /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$/.exec(
        auth,
      );
    if (!m) return { code: "AuthorizationHeaderMalformed", message: "unparsable Authorization" };
    [, credential = "", signedHeaders = "", signature = ""] = m;
    amzDate = headerValue(req, "x-amz-date") ?? "";
    payloadHash = headerValue(req, "x-amz-content-sha256") ?? "";
    if (payloadHash.startsWith("STREAMING-")) {
      return { code: "NotImplemented", message: "aws-chunked payloads are not supported" };
    }
    if (
      payloadHash !== "UNSIGNED-PAYLOAD" &&
      payloadHash !== createHash("sha256").update(body).digest("hex")
    ) {
      return { code: "XAmzContentSHA256Mismatch", message: "payload hash does not match" };
    }
  }

  const [accessKeyId, date, region, service, terminal] = credential.split("/");
  if (accessKeyId !== FAKE_S3_CREDENTIALS.accessKeyId) {
    return { code: "InvalidAccessKeyId", message: "unknown access key id" };
  }
  if (
    !date ||
    date !== amzDate.slice(0, 8) ||
    region !== FAKE_S3_CREDENTIALS.region ||
    service !== "s3" ||
    terminal !== "aws4_request"
  ) {
    return { code: "AuthorizationHeaderMalformed", message: `bad credential scope ${credential}` };
  }
  if (Number.isNaN(parseAmzDate(amzDate))) {
    return { code: "AccessDenied", message: "missing or malformed X-Amz-Date" };
  }

  const names = signedHeaders.split(";");
  if (!names.includes("host")) return { code: "AccessDenied", message: "host must be signed" };
  const canonicalHeaders = names.map((n) => `${n}:${headerValue(req, n) ?? ""}\n`).join("");
  const canonicalQuery = query
    .filter(([k]) => k !== "X-Amz-Signature")
    .map(([k, v]) => [rfc3986(k), rfc3986(v)] as const)
    .sort(([ak, av], [bk, bv]) => (ak === bk ? compare(av, bv) : compare(ak, bk)))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  // S3 signs the path exactly as sent (no second encoding, no dot-segment normalisation).
  const canonicalRequest = [
    req.method,
    rawPath,
    canonicalQuery,
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join("\n");
  const scope = `${date}/${region}/s3/aws4_request`;
  const stringToSign = [
    "AWS4-HMAC-SHA256",
    amzDate,
    scope,
    createHash("sha256").update(canonicalRequest).digest("hex"),
  ].join("\n");
  let key: Buffer = Buffer.from(`AWS4${FAKE_S3_CREDENTIALS.secretAccessKey}`);
  for (const part of [date, region, "s3", "aws4_request"]) key = hmac(key, part);
  const expected = Buffer.from(hmac(key, stringToSign).toString("hex"));
  const given = Buffer.from(signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    return { code: "SignatureDoesNotMatch", message: "The request signature does not match" };
  }
  return undefined;
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

function headerValue(req: http.IncomingMessage, name: string): string | undefined {
  const values: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() === name) {
      values.push(req.rawHeaders[i + 1]!.trim().replace(/\s+/g, " "));
    }
  }
  return values.length ? values.join(",") : undefined;
}

function parseQuery(raw: string): [string, string][] {
  if (!raw) return [];
  return raw.split("&").map((pair) => {
    const eq = pair.indexOf("=");
    const k = eq === -1 ? pair : pair.slice(0, eq);
    const v = eq === -1 ? "" : pair.slice(eq + 1);
    return [decodeURIComponent(k), decodeURIComponent(v)];
  });
}

function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `20240102T030405Z` to epoch milliseconds (NaN when malformed). */
function parseAmzDate(s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return NaN;
  const [, y, mo, d, h, mi, se] = m.map(Number) as number[];
  return Date.UTC(y!, mo! - 1, d!, h!, mi!, se!);
}

function sendError(
  res: http.ServerResponse,
  status: number,
  code: string,
  message: string,
  resource: string,
): void {
  const xml =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message>` +
    `<Resource>${escapeXml(resource)}</Resource><RequestId>fake-s3</RequestId></Error>`;
  res.writeHead(status, { "content-type": "application/xml" });
  res.end(xml);
}

function escapeXml(s: string): string {
  return s.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!,
  );
}
