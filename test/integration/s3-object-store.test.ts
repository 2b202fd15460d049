import { S3ObjectStore } from "../../src/storage/s3-object-store";
import { FAKE_S3_CREDENTIALS, startFakeS3, type FakeS3 } from "../helpers/fake-s3";

describe("S3ObjectStore against an S3-compatible server", () => {
  let s3: FakeS3;
  let store: S3ObjectStore;

  beforeAll(async () => {
    s3 = await startFakeS3();
    store = new S3ObjectStore({
      bucket: s3.bucket,
      endpoint: s3.url,
      ...FAKE_S3_CREDENTIALS,
      prefix: "/deployment-a/",
    });
  });

  afterAll(async () => {
    store.close();
    await s3.close();
  });

  afterEach(() => {
    s3.now = () => Date.now();
  });

  it("stores bytes with their content type under the prefix and reads them back", async () => {
    const data = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    await store.put("generations/g1/1-0.png", data, "image/png");

    expect(s3.objects.get("deployment-a/generations/g1/1-0.png")).toEqual({
      data,
      contentType: "image/png",
    });
    expect(await store.get("generations/g1/1-0.png")).toEqual({ data, contentType: "image/png" });
  });

  it("returns null for a key that was never stored", async () => {
    expect(await store.get("generations/none/1-0.png")).toBeNull();
  });

  it("keeps keys with slashes, spaces and non-ASCII characters intact", async () => {
    const key = "generations/a b+c/ü/1-0 (final).wav";
    await store.put(key, Buffer.from("RIFF"), "audio/wav");

    expect([...s3.objects.keys()]).toContain(`deployment-a/${key}`);
    expect((await store.get(key))?.data.toString()).toBe("RIFF");
    const res = await fetch(await store.signedUrl(key, 60));
    expect(await res.text()).toBe("RIFF");
  });

  it("gives a presigned URL that downloads the object over plain fetch until it expires", async () => {
    await store.put("generations/g2/1-0.png", Buffer.from("png bytes"), "image/png");

    const url = new URL(await store.signedUrl("generations/g2/1-0.png", 900));
    expect(url.origin + url.pathname).toBe(
      `${s3.url}/${s3.bucket}/deployment-a/generations/g2/1-0.png`,
    );
    expect(url.searchParams.get("X-Amz-Expires")).toBe("900");
    expect(url.searchParams.get("X-Amz-Credential")).toMatch(
      new RegExp(`^${FAKE_S3_CREDENTIALS.accessKeyId}/\\d{8}/us-east-1/s3/aws4_request$`),
    );

    const ok = await fetch(url);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("image/png");
    expect(await ok.text()).toBe("png bytes");

    s3.now = () => Date.now() + 901_000;
    const expired = await fetch(url);
    expect(expired.status).toBe(403);
    expect(await expired.text()).toContain("Request has expired");
  });

  it("refuses a presigned URL whose key was changed after signing", async () => {
    await store.put("generations/g3/1-0.png", Buffer.from("a"), "image/png");
    await store.put("generations/g3/1-1.png", Buffer.from("b"), "image/png");

    const url = (await store.signedUrl("generations/g3/1-0.png", 60)).replace("1-0.png", "1-1.png");
    const res = await fetch(url);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("SignatureDoesNotMatch");
  });

  it("fails (rather than reading as missing) with the wrong secret", async () => {
    const wrong = new S3ObjectStore({
      bucket: s3.bucket,
      endpoint: s3.url,
      accessKeyId: FAKE_S3_CREDENTIALS.accessKeyId,
      secretAccessKey: "not-the-secret",
    });
    try {
      await expect(wrong.put("k.png", Buffer.from("x"), "image/png")).rejects.toMatchObject({
        name: "SignatureDoesNotMatch",
      });
      await expect(wrong.get("generations/g1/1-0.png")).rejects.toMatchObject({
        name: "SignatureDoesNotMatch",
      });
    } finally {
      wrong.close();
    }
  });

  it("fails (rather than reading as missing) when the bucket does not exist", async () => {
    const other = new S3ObjectStore({
      bucket: "no-such-bucket",
      endpoint: s3.url,
      ...FAKE_S3_CREDENTIALS,
    });
    try {
      await expect(other.get("generations/g1/1-0.png")).rejects.toMatchObject({
        name: "NoSuchBucket",
      });
    } finally {
      other.close();
    }
  });

  it("refuses keys that would not be portable to the local store", async () => {
    await expect(store.put("../escape.png", Buffer.from("x"), "image/png")).rejects.toThrow(
      "invalid object key",
    );
    await expect(store.get("/absolute.png")).rejects.toThrow("invalid object key");
  });

  it("refuses presigned URLs longer than SigV4 allows", async () => {
    await expect(store.signedUrl("generations/g1/1-0.png", 8 * 24 * 3600)).rejects.toThrow(
      RangeError,
    );
  });

  it("explains incomplete configuration at construction", () => {
    expect(() => new S3ObjectStore({ bucket: "" })).toThrow("needs a bucket name");
    expect(() => new S3ObjectStore({ bucket: "b", accessKeyId: "only-the-id" })).toThrow(
      "both an access key id and a secret access key",
    );
  });
});
