import { sql } from "slonik";
import { z } from "zod";
import type { AppliedMigration } from "../migrations.js";
import type { Db } from "./tenants.js";

const appliedRow = z.object({ id: z.number().int(), name: z.string(), hash: z.string() });

/** Applied migrations (without postgres-migrations' own bookkeeping row 0); [] before the first run. */
export async function listAppliedMigrations(db: Db): Promise<AppliedMigration[]> {
  const exists = await db.oneFirst(sql.type(z.object({ exists: z.boolean() }))`
    SELECT to_regclass('public.migrations') IS NOT NULL AS exists`);
  if (!exists) return [];
  const rows = await db.any(sql.type(appliedRow)`SELECT id, name, hash FROM migrations WHERE id > 0 ORDER BY id`);
  return [...rows];
}
