import type { Config } from "../config.js";
import { connectWithRetry, createMigration, migrateDown, migrateUp, schemaStatus } from "../db/migrations.js";

export const MIGRATE_USAGE = `usage: tenant-registry migrate <up | version | down | down-all | create NAME> [--force]

  up         apply pending migrations (init-container mode; waits for the database)
  version    print the applied version and what is pending
  down       revert the latest migration      (dev only; --force elsewhere)
  down-all   revert every migration           (dev only; --force elsewhere)
  create     write migrations/N_NAME.sql and migrations/down/N_NAME.sql`;

type Out = { log(line: string): void; error(line: string): void };

/** The migrate command: parse, call one function, return the exit code. */
export async function runMigrate(args: readonly string[], config: Config, out: Out): Promise<number> {
  const force = args.includes("--force");
  const [command, ...rest] = args.filter((a) => a !== "--force");
  if (command === "create") {
    if (rest.length !== 1) {
      out.error(MIGRATE_USAGE);
      return 2;
    }
    const [up, down] = await createMigration(rest[0]!);
    out.log(`created ${up}\ncreated ${down}`);
    return 0;
  }
  if (!command || !["up", "version", "down", "down-all"].includes(command) || rest.length > 0) {
    out.error(MIGRATE_USAGE);
    return 2;
  }
  if ((command === "down" || command === "down-all") && config.appEnv !== "dev" && !force) {
    out.error(`refusing to run "migrate ${command}" with APP_ENV=${config.appEnv}: production is forward-only (pass --force to override)`);
    return 1;
  }
  if (config.databaseUrl === undefined) {
    out.error("DATABASE_URL: required for migrate");
    return 2;
  }

  const client = await connectWithRetry(config.databaseUrl, config.databaseWaitMs, out.log);
  try {
    switch (command) {
      case "up": {
        const applied = await migrateUp(client, out.log);
        const status = await schemaStatus(client);
        out.log(applied.length === 0 ? `schema is current at version ${status.version}` : `schema is now at version ${status.version}`);
        return 0;
      }
      case "version": {
        const status = await schemaStatus(client);
        const latest = status.applied.at(-1);
        out.log(`version ${status.version}${latest ? ` (${latest.name})` : " (empty database)"}`);
        for (const m of status.pending) out.log(`pending ${m.fileName}`);
        for (const m of status.modified) out.log(`modified since applied: ${m.id}_${m.name}`);
        for (const m of status.ahead) out.log(`applied by a newer release: ${m.id}_${m.name}`);
        return status.modified.length > 0 ? 1 : 0;
      }
      default: {
        const reverted = await migrateDown(client, { all: command === "down-all" }, out.log);
        if (reverted.length === 0) out.log("nothing to revert");
        return 0;
      }
    }
  } finally {
    await client.end();
  }
}
