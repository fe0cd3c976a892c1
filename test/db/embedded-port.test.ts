import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

const portOf = (url: string) => Number(new URL(url).port);

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query("SELECT 1 AS one")).rows[0]?.one === 1;
  } finally {
    await client.end();
  }
}

describe("the persistent embedded PostgreSQL (make dev)", () => {
  it("keeps its port across restarts, and moves only when that port is taken", { timeout: 120_000 }, async () => {
    // The folder itself: PostgreSQL runs as another user when the tests run as root.
    const dataDir = await mkdtemp(join(tmpdir(), "embedded-port-"));
    dirs.push(dataDir, `${dataDir}.port`);
    const start = () => startEmbeddedPostgres({ dataDir, database: "tenant_registry", persistent: true });

    const first = await start();
    const port = portOf(first.url);
    await first.stop();

    const second = await start();
    expect(portOf(second.url)).toBe(port); // the DATABASE_URL copied from the log still works
    expect(await answers(second.url)).toBe(true);
    await second.stop();

    // Someone else took the port meanwhile: start anyway, elsewhere, and remember the new one.
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(port, "127.0.0.1", resolve));
    try {
      const third = await start();
      const moved = portOf(third.url);
      expect(moved).not.toBe(port);
      expect(await answers(third.url)).toBe(true);
      await third.stop();
      expect(Number(await readFile(`${dataDir}.port`, "utf8"))).toBe(moved);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });
});
