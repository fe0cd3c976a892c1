import { createPgDriverFactory } from "@slonik/pg-driver";
import {
  createPool,
  createTimestampWithTimeZoneTypeParser,
  SchemaValidationError,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
} from "slonik";

export type { DatabasePool };

/**
 * Slonik only validates rows against `sql.type(schema)` when an interceptor does
 * it; this is that interceptor. A row that does not match its schema is a bug or
 * schema drift, and fails loudly instead of flowing on half-typed.
 */
const resultParser: Interceptor = {
  name: "result-parser",
  transformRow(queryContext, query, row) {
    const parser = queryContext.resultParser;
    if (parser === undefined) return row;
    const result = parser["~standard"].validate(row);
    if (result instanceof Promise) {
      throw new TypeError("row schemas must be synchronous");
    }
    if (result.issues) throw new SchemaValidationError(query, row, result.issues);
    return result.value as QueryResultRow;
  },
};

export type PoolOptions = {
  readonly maxPoolSize?: number;
  readonly statementTimeoutMs?: number;
  readonly connectionTimeoutMs?: number;
  /** Run after the result parser, e.g. to watch which queries a call makes. */
  readonly interceptors?: readonly Interceptor[];
};

export async function createDatabasePool(databaseUrl: string, options: PoolOptions = {}): Promise<DatabasePool> {
  return createPool(databaseUrl, {
    driverFactory: createPgDriverFactory(),
    interceptors: [resultParser, ...(options.interceptors ?? [])],
    // timestamptz as Date (Slonik's preset gives epoch numbers); everything else as pg returns it.
    typeParsers: [{ ...createTimestampWithTimeZoneTypeParser(), parse: (v) => new Date(v) }],
    maxPoolSize: options.maxPoolSize ?? 10,
    statementTimeout: options.statementTimeoutMs ?? 10_000,
    connectionTimeout: options.connectionTimeoutMs ?? 5_000,
    idleInTransactionSessionTimeout: 30_000,
    // Slonik's default runs DISCARD ALL after every pooled query: a second round
    // trip on every hot-path lookup. We never leave session state behind
    // (no SET, no temp tables, no LISTEN), so there is nothing to reset.
    resetConnection: async () => {},
  });
}
