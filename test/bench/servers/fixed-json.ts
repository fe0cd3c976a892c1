/**
 * Baseline (a): raw node:http answering a fixed JSON body, the floor of an
 * HTTP/1.1 JSON call on this machine. Also the bare server of the cold-start
 * section. Listens on PORT; /readyz answers too.
 */
import http from "node:http";

const body = Buffer.from(
  JSON.stringify({
    id: "00000000-0000-0000-0000-000000000001",
    slug: "acme",
    name: "Acme Inc.",
    status: "active",
    plan: "professional",
    products: ["certifai", "compliance"],
    createdAt: "2026-01-01T00:00:00Z",
    updatedAt: "2026-01-01T00:00:00Z",
    metadata: {},
  }),
);

http
  .createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
    res.end(body);
  })
  .listen(Number(process.env["PORT"]), "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
