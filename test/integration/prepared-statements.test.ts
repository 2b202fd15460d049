import type { QueryRunner } from "typeorm";
import { openDatabase, type Database } from "../../src/infra/data-source";
import { MAX_PREPARED_PER_CONNECTION, UNPREPARED } from "../../src/infra/prepared-statements";
import { createTestDatabase } from "../helpers/postgres";

/** Statements prepared on the connection of `runner`, by text. */
async function prepared(runner: QueryRunner): Promise<string[]> {
  const rows = (await runner.query(
    `SELECT statement FROM pg_prepared_statements WHERE name LIKE 'gg\\_%'`,
  )) as Array<{ statement: string }>;
  return rows.map((r) => r.statement);
}

describe("prepared statements", () => {
  let dbUrl: { url: string; drop(): Promise<void> };
  const open: Database[] = [];
  const runners: QueryRunner[] = [];

  beforeAll(async () => {
    dbUrl = await createTestDatabase();
  });

  afterAll(async () => {
    for (const r of runners) await r.release();
    for (const db of open) await db.close();
    await dbUrl?.drop();
  });

  /** One pooled connection of a database opened with the option. */
  const connection = async (preparedStatements?: boolean): Promise<QueryRunner> => {
    const db = await openDatabase({
      url: dbUrl.url,
      dataDir: "unused",
      poolSize: 2,
      preparedStatements,
    });
    open.push(db);
    const runner = db.dataSource.createQueryRunner();
    await runner.connect();
    runners.push(runner);
    return runner;
  };

  it("prepares a parameterised statement once per connection and runs it again by name", async () => {
    const runner = await connection();
    const sql = "SELECT $1::int + 1 AS n";
    expect(await runner.query(sql, [1])).toEqual([{ n: 2 }]);
    expect(await runner.query(sql, [41])).toEqual([{ n: 42 }]);
    expect(await prepared(runner)).toEqual([sql]);
  });

  it("sends statements without parameters, and those marked unprepared, unnamed", async () => {
    const runner = await connection();
    await runner.query("SELECT 1 AS one");
    await runner.query("SELECT 1 AS one", []);
    expect(await runner.query(`${UNPREPARED} SELECT $1::text AS t`, ["x"])).toEqual([{ t: "x" }]);
    expect(await prepared(runner)).toEqual([]);
  });

  it("prepares nothing with DB_PREPARED_STATEMENTS off", async () => {
    const runner = await connection(false);
    await runner.query("SELECT $1::int AS n", [7]);
    expect(await prepared(runner)).toEqual([]);
  });

  it("keeps a connection's prepared statements bounded; the rest still run, unnamed", async () => {
    const runner = await connection();
    for (let i = 0; i < MAX_PREPARED_PER_CONNECTION + 20; i++) {
      expect(await runner.query(`SELECT $1::int + ${i} AS n`, [1])).toEqual([{ n: 1 + i }]);
    }
    expect(await prepared(runner)).toHaveLength(MAX_PREPARED_PER_CONNECTION);
    // Those it kept run again by name.
    expect(await runner.query("SELECT $1::int + 0 AS n", [5])).toEqual([{ n: 5 }]);
  });

  it("a statement that fails leaves nothing prepared, and the connection goes on", async () => {
    const runner = await connection();
    await expect(runner.query("SELECT $1::int FROM no_such_table", [1])).rejects.toThrow(
      /no_such_table/,
    );
    await expect(runner.query("SELECT $1::int AS n", ["not a number"])).rejects.toThrow(
      /invalid input syntax/,
    );
    // Parsed before its parameter was refused: prepared, and usable with a good one.
    expect(await runner.query("SELECT $1::int AS n", [3])).toEqual([{ n: 3 }]);
    expect(await prepared(runner)).toEqual(["SELECT $1::int AS n"]);
  });

  it("runs a prepared statement again after the table it reads changed", async () => {
    const runner = await connection();
    await runner.query("CREATE TABLE replanned (a int)");
    await runner.query("INSERT INTO replanned VALUES (1)");
    const sql = "SELECT a FROM replanned WHERE a = $1";
    expect(await runner.query(sql, [1])).toEqual([{ a: 1 }]);
    await runner.query("CREATE INDEX ON replanned (a)");
    await runner.query("ALTER TABLE replanned ADD COLUMN b int");
    expect(await runner.query(sql, [1])).toEqual([{ a: 1 }]);
  });

  it("sends star expansions unnamed, so a column added by a migration cannot break them", async () => {
    const runner = await connection();
    await runner.query("CREATE TABLE widened (a int)");
    await runner.query("INSERT INTO widened VALUES (1)");
    const star = [
      "SELECT * FROM widened WHERE a = $1",
      "SELECT w.* FROM widened w WHERE w.a = $1",
      "UPDATE widened SET a = a WHERE a = $1 RETURNING *",
    ];
    for (const sql of star) await runner.query(sql, [1]);
    await runner.query("ALTER TABLE widened ADD COLUMN b int");
    for (const sql of star) {
      const result = (await runner.query(sql, [1])) as unknown[];
      // An UPDATE comes back as [rows, count].
      const rows = Array.isArray(result[0]) ? result[0] : result;
      expect(rows).toEqual([{ a: 1, b: null }]);
    }
    expect(await prepared(runner)).toEqual([]);
    // count(*) is no expansion: prepared.
    await runner.query("SELECT count(*)::int AS n FROM widened WHERE a = $1", [1]);
    expect(await prepared(runner)).toHaveLength(1);
  });
});
