import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ExportAuditEventsRequestSchema,
  ExportAuditEventsResponseSchema,
  ListAuditEventsRequestSchema,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { envelope, grpcStatus, h2Post } from "../support/wire.js";

const SERVICE = "/breakpilot.tenantregistry.v1.TenantRegistryService";
const EVENTS = 2_500; // three read pages, several messages

let db: TestDatabase;
let sql: pg.Client;
let server: TestServer;
let session: http2.ClientHttp2Session;
let tenantId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.client();
  tenantId = (await insertTenant(sql)).id;
  await sql.query(
    `SELECT audit_append(jsonb_agg(jsonb_build_object('tenant_id', $1::text, 'action', 'report.view', 'crud', 'r',
       'actor_id', 'u-' || n, 'description', 'compressible ' || repeat('text ', 20), 'created_at', now() - (n || ' seconds')::interval) ORDER BY n))
     FROM generate_series(1, $2::int) AS n`,
    [tenantId, EVENTS],
  );
  server = await startTestServer(await db.pool());
  session = http2.connect(server.baseUrl);
});
afterAll(async () => {
  session?.close();
  await server?.close();
  await db?.drop();
});

/** The envelopes of a body: flags and payload. */
function envelopes(body: Buffer): { flags: number; payload: Buffer }[] {
  const out: { flags: number; payload: Buffer }[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    out.push({ flags: body.readUInt8(at), payload: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

describe("compression of exports", () => {
  // gzip cost about as much server CPU per event as reading and encoding it (make bench, export).
  it("ExportAuditEvents answers uncompressed even when the client accepts gzip (gRPC)", async () => {
    const request = envelope(toBinary(ExportAuditEventsRequestSchema, create(ExportAuditEventsRequestSchema, { tenantId })));
    const answer = await h2Post(session, `${SERVICE}/ExportAuditEvents`, { "content-type": "application/grpc", te: "trailers", "grpc-accept-encoding": "gzip" }, request);
    expect(grpcStatus(answer)).toBe("0");
    expect(answer.headers["grpc-encoding"] ?? "identity").toBe("identity");
    const messages = envelopes(answer.body);
    expect(messages.length).toBeGreaterThan(1);
    expect(messages.every((m) => m.flags === 0)).toBe(true);
    const events = messages.flatMap((m) => fromBinary(ExportAuditEventsResponseSchema, m.payload).events);
    expect(events.map((e) => Number(e.sequence))).toEqual(Array.from({ length: EVENTS }, (_, i) => i + 1));
  });

  it("ExportAuditEvents answers uncompressed over the Connect protocol too", async () => {
    const request = envelope(Buffer.from(JSON.stringify({ tenantId })));
    const answer = await h2Post(
      session,
      `${SERVICE}/ExportAuditEvents`,
      { "content-type": "application/connect+json", "connect-protocol-version": "1", "connect-accept-encoding": "gzip" },
      request,
    );
    expect(answer.status).toBe(200);
    expect(answer.headers["connect-content-encoding"] ?? "identity").toBe("identity");
    const messages = envelopes(answer.body);
    expect(messages.every((m) => (m.flags & 0b01) === 0)).toBe(true); // no message compressed
    const end = JSON.parse(messages.at(-1)!.payload.toString("utf8")) as { error?: unknown };
    expect(end.error).toBeUndefined();
    const events = messages.slice(0, -1).flatMap((m) => (JSON.parse(m.payload.toString("utf8")) as { events: unknown[] }).events);
    expect(events).toHaveLength(EVENTS);
  });

  it("other RPCs still compress for a client that accepts gzip", async () => {
    const request = envelope(toBinary(ListAuditEventsRequestSchema, create(ListAuditEventsRequestSchema, { tenantId, pageSize: 100 })));
    const answer = await h2Post(session, `${SERVICE}/ListAuditEvents`, { "content-type": "application/grpc", te: "trailers", "grpc-accept-encoding": "gzip" }, request);
    expect(grpcStatus(answer)).toBe("0");
    expect(answer.headers["grpc-encoding"]).toBe("gzip");
    expect(envelopes(answer.body)[0]!.flags).toBe(1);
  });
});
