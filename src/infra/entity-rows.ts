import type { DataSource, EntityMetadata, EntityTarget, ObjectLiteral } from "typeorm";
import type { ColumnMetadata } from "typeorm/metadata/ColumnMetadata";

/**
 * An entity's columns in a hand-written SELECT, and its rows turned into entities the way
 * TypeORM's query builder does (the driver's hydration and each column's transformer), for
 * statements on a hot path: a query builder assembles its SQL and maps its aliases again on
 * every call, which cost more CPU than the statement itself in the worker's profile.
 */
export class EntityRows<T extends ObjectLiteral> {
  private readonly metadata: EntityMetadata;
  private readonly columns: Array<{ alias: string; column: ColumnMetadata }>;
  private readonly primary: string;

  constructor(
    private readonly db: DataSource,
    target: EntityTarget<T>,
    /** Prefix of the aliases, so that two entities' columns can share one row. */
    private readonly prefix: string,
  ) {
    this.metadata = db.getMetadata(target);
    this.columns = this.metadata.columns.map((column) => ({
      alias: `${prefix}_${column.databaseName}`,
      column,
    }));
    const [primary] = this.metadata.primaryColumns;
    if (!primary || this.metadata.primaryColumns.length > 1)
      throw new Error(`${this.metadata.name}: one primary column expected`);
    this.primary = `${prefix}_${primary.databaseName}`;
  }

  /** The SELECT list of every column of the table aliased `table` in the statement. */
  select(table: string): string {
    return this.columns
      .map(({ alias, column }) => `${table}."${column.databaseName}" AS "${alias}"`)
      .join(", ");
  }

  /** The entity in `row`; null when its primary key is null (the empty side of an outer join). */
  from(row: Record<string, unknown>): T | null {
    if (row[this.primary] === null || row[this.primary] === undefined) return null;
    const entity = this.metadata.create() as T;
    for (const { alias, column } of this.columns) {
      column.setEntityValue(entity, this.db.driver.prepareHydratedValue(row[alias], column));
    }
    return entity;
  }
}
