import { FAKE_S3_CREDENTIALS, startFakeS3, type FakeS3 } from "../helpers/fake-s3";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

describe("outputs in an S3-compatible bucket", () => {
  let env: TestEnv;
  let s3: FakeS3;
  let server: TestServer;
  let socket: WsClient;
  let key: string;

  beforeAll(async () => {
    env = await createTestEnv();
    s3 = await startFakeS3();
    server = await startTestServer(env, {
      overrides: {
        S3_BUCKET: s3.bucket,
        S3_ENDPOINT: s3.url,
        S3_ACCESS_KEY_ID: FAKE_S3_CREDENTIALS.accessKeyId,
        S3_SECRET_ACCESS_KEY: FAKE_S3_CREDENTIALS.secretAccessKey,
        S3_PREFIX: "outputs",
        OUTPUT_URL_TTL_SECONDS: "600",
      },
    });
    key = (await partner(server, await adminKey(server))).key;
    socket = wsClient(server.url, key);
  });

  afterAll(async () => {
    await socket.dispose();
    await server.stop();
    await s3.close();
    await env.cleanup();
  });

  it("stores each output in the bucket and links to it with a presigned, expiring URL", async () => {
    const res = await gql(
      server.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { id } }`,
      {
        input: {
          userId: "u",
          mediaType: "IMAGE",
          prompt: "a bucket of paint",
          width: 64,
          height: 64,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    const done = await socket
      .subscribe(
        `subscription($id: ID!) { generationUpdated(id: $id) { type generation { outputs { url contentType bytes } } } }`,
        { id },
      )
      .until((m) => m.generationUpdated.type === "SUCCEEDED");
    const [output] = done.generationUpdated.generation.outputs;
    const url = new URL(output.url);
    expect(url.origin).toBe(new URL(s3.url).origin);
    expect(url.pathname).toBe(`/${s3.bucket}/outputs/generations/${id}/1-0.png`);
    expect(url.searchParams.get("X-Amz-Expires")).toBe("600");
    const download = await fetch(output.url);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).length).toBe(output.bytes);
    expect([...s3.objects.keys()]).toContain(`outputs/generations/${id}/1-0.png`);
  });
});
