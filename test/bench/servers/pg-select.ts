/**
 * Baseline (b): raw node:http + pg running the very statements our hot reads send
 * (captured from the data-access functions by the bench, passed in BENCH_QUERIES as
 * {"/route": {name, text, values}}), as named prepared statements, answering the
 * row as JSON. No framework, no validation: the floor of "HTTP in, one query, JSON out".
 */
import http from "node:http";
import pg from "pg";

type Statement = { name: string; text: string; values: unknown[] };
const statements = new Map(Object.entries(JSON.parse(process.env["BENCH_QUERIES"] ?? "{}") as Record<string, Statement>));
// The same pool size as the service's (src/db/pool.ts).
const pool = new pg.Pool({ connectionString: process.env["DATABASE_URL"], max: 10 });

http
  .createServer((req, res) => {
    req.resume();
    const statement = statements.get(req.url ?? "");
    if (req.url === "/readyz") {
      res.writeHead(200).end("ok");
      return;
    }
    if (!statement) {
      res.writeHead(404).end();
      return;
    }
    pool.query({ name: statement.name, text: statement.text, values: statement.values }).then(
      (result) => {
        const body = JSON.stringify(result.rows[0] ?? null);
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        res.end(body);
      },
      () => res.writeHead(503).end(),
    );
  })
  .listen(Number(process.env["PORT"]), "127.0.0.1");
process.on("SIGTERM", () => void pool.end().finally(() => process.exit(0)));
