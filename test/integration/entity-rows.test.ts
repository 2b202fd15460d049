import { AttemptEntity, GenerationEntity } from "../../src/entities";
import { EntityRows } from "../../src/infra/entity-rows";
import { gql, partner, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

/**
 * Rows of a hand-written SELECT must become the same entities TypeORM's own finders make:
 * every column, with the driver's conversions and the columns' transformers (money, dates,
 * JSON, nulls).
 */
describe("EntityRows", () => {
  let env: TestEnv;
  let server: TestServer;
  const sockets: WsClient[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env);
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    await server?.stop();
    await env?.cleanup();
  });

  it("maps a finished generation and its attempts exactly as TypeORM does", async () => {
    const acme = await partner(server, await adminKey(server));
    const ws = wsClient(server.url, acme.key);
    sockets.push(ws);
    const res = await gql<{ generate: { id: string } }>(
      server.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { id } }`,
      {
        input: {
          userId: "rows",
          mediaType: "IMAGE",
          prompt: "a kettle on a stove",
          width: 64,
          height: 64,
        },
      },
      acme.key,
    );
    const id = res.data!.generate.id;
    const rec = ws.subscribe(
      `subscription($id: ID!) { generationUpdated(id: $id) { generation { status } } }`,
      { id },
    );
    await rec.until((m) => m.generationUpdated.generation.status === "SUCCEEDED");
    rec.stop();
    // And one that never ran: nulls where the other has values.
    const queued = await gql<{ generate: { id: string } }>(
      server.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { id } }`,
      { input: { userId: "rows", mediaType: "AUDIO", prompt: "rain [sim:latency=60000]" } },
      acme.key,
    );
    const ds = server.app.db.dataSource;
    const generations = new EntityRows(ds, GenerationEntity, "g");
    const attempts = new EntityRows(ds, AttemptEntity, "a");
    for (const gid of [id, queued.data!.generate.id]) {
      const rows = (await ds.query(
        `SELECT ${generations.select("g")}, ${attempts.select("a")}
           FROM generations g LEFT JOIN attempts a ON a.generation_id = g.id
          WHERE g.id = $1 ORDER BY a.number`,
        [gid],
      )) as Array<Record<string, unknown>>;
      const expected = await ds.getRepository(GenerationEntity).findOneByOrFail({ id: gid });
      expect(generations.from(rows[0]!)).toEqual(expected);
      expect(generations.from(rows[0]!)).toBeInstanceOf(GenerationEntity);
      const expectedAttempts = await ds
        .getRepository(AttemptEntity)
        .find({ where: { generationId: gid }, order: { number: "ASC" } });
      expect(rows.map((r) => attempts.from(r)).filter((a) => a !== null)).toEqual(expectedAttempts);
    }
    const finished = await ds.getRepository(GenerationEntity).findOneByOrFail({ id });
    expect(finished.outputs.length).toBeGreaterThan(0);
    expect(typeof finished.costUsd).toBe("number");
  });

  it("gives null for the empty side of an outer join", () => {
    const attempts = new EntityRows(server.app.db.dataSource, AttemptEntity, "a");
    expect(attempts.from({ a_id: null })).toBeNull();
  });
});
