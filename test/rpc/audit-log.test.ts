import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Message } from "@bufbuild/protobuf";
import { timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import type { AuditEvent, AuditEventInput } from "../../gen/breakpilot/tenantregistry/v1/audit_pb.js";
import {
  TenantRegistryService,
  type ExportAuditEventsRequest,
  type ListAuditEventsRequest,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { insertTenant } from "../support/fixtures.js";
import { clientFor, type TestServer, type TransportName } from "../support/server.js";
import { useTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";

const run = promisify(execFile);
const BUF = join(PACKAGE_ROOT, "node_modules", ".bin", "buf");
const SERVICE = "breakpilot.tenantregistry.v1.TenantRegistryService";

/** A request as a plain object literal: optional fields, nested messages plain too (timestamps as they are). */
type Plain<T> = {
  [K in keyof T as K extends "$typeName" | "$unknown" ? never : K]?: NonNullable<T[K]> extends Timestamp
    ? T[K]
    : NonNullable<T[K]> extends Message
      ? Plain<NonNullable<T[K]>>
      : T[K];
};
type EventInit = Plain<AuditEventInput>;
type ListInit = Plain<ListAuditEventsRequest>;
type ExportInit = Plain<ExportAuditEventsRequest>;

let server: TestServer;
let sqlClient: pg.Client;
/** The server's "now"; undefined: the real time. */
let frozenNow: Date | undefined;

useTestServer((h) => ({ server, sql: sqlClient } = h), { clock: () => frozenNow ?? new Date() });


/** A prefix for external ids: they are unique per component across all tenants and tests. */
const unique = () => randomUUID().slice(0, 8);

function validEvent(tenantId: string, overrides: Partial<EventInit> = {}): EventInit {
  return {
    tenantId,
    action: "certifai.report.create",
    crud: "c",
    actor: { id: "user-1", name: "Ada Lovelace", type: "user", href: "https://id.example/users/1" },
    target: { id: "report-1", name: "Quarterly report", type: "report" },
    sourceIp: "203.0.113.7",
    description: "created a report",
    fields: { title: "Quarterly report" },
    component: "certifai-api",
    ...overrides,
  };
}

async function countEvents(where: { tenantId?: string; component?: string }): Promise<number> {
  const { rows } = await sqlClient.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM audit_log
     WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR component = $2)`,
    [where.tenantId ?? null, where.component ?? null],
  );
  return rows[0]!.n;
}

/**
 * `count` events of one tenant straight into the table, created one
 * millisecond apart from `base`, in groups that share a timestamp or differ
 * only in microseconds, so the keyset must use the id and every microsecond.
 */
async function seedEvents(tenantId: string, count: number, base = new Date("2024-03-01T00:00:00Z")): Promise<void> {
  await sqlClient.query(
    `INSERT INTO audit_log (tenant_id, action, crud, actor_id, actor_type, target_id, target_type, created_at, component, fields)
     SELECT $1, 'seed.event', 'c', 'seeder', 'service', 'target-' || i, 'seed',
            $2::timestamptz + (i / 4) * interval '1 millisecond' + (i % 4 / 2) * interval '1 microsecond',
            'seed', jsonb_build_object('i', i)
     FROM generate_series(1, $3) AS i`,
    [tenantId, base.toISOString(), count],
  );
}

/**
 * Ids of a tenant's events in chain order: the sequence the inserting
 * transactions assigned (commit order), not created_at, which senders may
 * backdate and which is a transaction's start time.
 */
async function idsInOrder(tenantId: string, order: "asc" | "desc"): Promise<string[]> {
  const direction = order === "asc" ? "ASC" : "DESC";
  const { rows } = await sqlClient.query<{ id: string }>(
    `SELECT id FROM audit_log WHERE chain_id = $1 ORDER BY seq ${direction}`,
    [tenantId],
  );
  return rows.map((r) => r.id);
}

function violationsOf(error: ConnectError): { field: string; description: string }[] {
  return error.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map(({ field, description }) => ({ field, description })));
}

async function failure(promise: Promise<unknown>): Promise<ConnectError> {
  return promise.then(
    () => expect.fail("expected the call to fail"),
    (e: unknown) => ConnectError.from(e),
  );
}

describe.each<TransportName>(["grpc", "connect-json-h1"])("audit log over %s", (transport) => {
  const client = () => clientFor(TenantRegistryService, server.baseUrl, transport);

  async function listAll(req: ListInit): Promise<AuditEvent[]> {
    const events: AuditEvent[] = [];
    let pageToken = "";
    do {
      const page = await client().listAuditEvents({ ...req, pageToken });
      events.push(...page.events);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return events;
  }

  async function exportAll(req: ExportInit): Promise<AuditEvent[]> {
    const events: AuditEvent[] = [];
    for await (const message of client().exportAuditEvents(req)) events.push(...message.events);
    return events;
  }

  describe("RecordAuditEvents", () => {
    it("records a valid batch and lists it back with every field", async () => {
      const tenant = await insertTenant(sqlClient);
      frozenNow = new Date("2025-06-01T12:00:00.250Z");
      try {
        // Microseconds survive the round trip (nanos below a microsecond are dropped).
        const created: Timestamp = { ...timestampFromMs(Date.parse("2025-06-01T11:59:00Z")), nanos: 123_456_000 };
        const full = validEvent(tenant.id, {
          fields: { title: "Quarterly report", pages: 12, draft: false, tags: ["q2", "finance"], meta: { by: "ada" }, none: null },
          isFailure: false,
          created,
          externalId: `evt-${unique()}`,
        });
        const anonymous: EventInit = {
          tenantId: tenant.id,
          action: "login.attempt",
          crud: "r",
          isAnonymous: true,
          isFailure: true,
          sourceIp: "2001:db8::1",
        };
        expect(await client().recordAuditEvents({ events: [full, anonymous] })).toMatchObject({ recorded: 2, duplicates: 0 });

        const { events, nextPageToken } = await client().listAuditEvents({ tenantId: tenant.id });
        expect(nextPageToken).toBe("");
        expect(events).toHaveLength(2);
        const [newest, oldest] = events as [AuditEvent, AuditEvent];
        expect(oldest).toMatchObject({
          id: expect.stringMatching(/^[0-9a-f-]{36}$/),
          tenantId: tenant.id,
          action: "certifai.report.create",
          crud: "c",
          actor: { id: "user-1", name: "Ada Lovelace", type: "user", href: "https://id.example/users/1" },
          target: { id: "report-1", name: "Quarterly report", type: "report" },
          sourceIp: "203.0.113.7",
          description: "created a report",
          isFailure: false,
          isAnonymous: false,
          createdAt: { seconds: created.seconds, nanos: 123_456_000 },
          externalId: full.externalId,
          component: "certifai-api",
        });
        expect(oldest.fields).toEqual({ title: "Quarterly report", pages: 12, draft: false, tags: ["q2", "finance"], meta: { by: "ada" }, none: null });
        // Defaults: no actor or target, created now (the server's clock), component "external".
        expect(newest).toMatchObject({
          tenantId: tenant.id,
          action: "login.attempt",
          crud: "r",
          sourceIp: "2001:db8::1",
          description: "",
          isFailure: true,
          isAnonymous: true,
          createdAt: { seconds: BigInt(Date.parse("2025-06-01T12:00:00Z") / 1000), nanos: 250_000_000 },
          externalId: "",
          component: "external",
        });
        expect(newest.actor).toBeUndefined();
        expect(newest.target).toBeUndefined();
        expect(newest.fields).toEqual({});
        // Recording is not itself audited: exactly the two reported events exist.
        expect(await countEvents({ tenantId: tenant.id })).toBe(2);
      } finally {
        frozenNow = undefined;
      }
    });

    it("stores a component trimmed and lower-cased: one name, however a sender spells it", async () => {
      const component = `billing-${randomUUID().slice(0, 8)}`;
      const result = await client().recordAuditEvents({
        events: [{ action: "invoice.create", crud: "c", actor: { id: "svc", type: "service" }, component: `  ${component.toUpperCase()} ` }],
      });
      expect(result).toMatchObject({ recorded: 1 });
      expect(await countEvents({ component })).toBe(1);
    });

    it("records events without a tenant (platform events) and anonymous events with a partial actor", async () => {
      const component = `platform-${randomUUID().slice(0, 8)}`;
      const result = await client().recordAuditEvents({
        events: [
          { action: "platform.maintenance", crud: "u", actor: { id: "ops", type: "system" }, component },
          { action: "platform.probe", crud: "r", actor: { name: "probe" }, isAnonymous: true, component },
        ],
      });
      expect(result).toMatchObject({ recorded: 2, duplicates: 0 });
      const { rows } = await sqlClient.query(
        "SELECT tenant_id, actor_id, actor_name, is_anonymous FROM audit_log WHERE component = $1 ORDER BY action",
        [component],
      );
      expect(rows).toEqual([
        { tenant_id: null, actor_id: "ops", actor_name: null, is_anonymous: false },
        { tenant_id: null, actor_id: null, actor_name: "probe", is_anonymous: true },
      ]);
    });

    const RULES: [string, (tenantId: string) => Partial<EventInit>, string, RegExp][] = [
      ["a missing action", () => ({ action: "" }), "action", /is required/],
      ["an action with whitespace", () => ({ action: "report create" }), "action", /whitespace/],
      ["an action over 200 characters", () => ({ action: "a".repeat(201) }), "action", /at most 200/],
      ["an action with a NUL character", () => ({ action: "report\u0000.create" }), "action", /NUL/],
      ["a missing crud", () => ({ crud: "" }), "crud", /is required/],
      ["an unknown crud", () => ({ crud: "x" }), "crud", /one of c, r, u, d/],
      ["no actor without is_anonymous", () => ({ actor: undefined }), "actor", /is_anonymous/],
      ["an actor without id without is_anonymous", () => ({ actor: { name: "Ada" } }), "actor.id", /is_anonymous/],
      ["a malformed tenant id", () => ({ tenantId: "not-a-uuid" }), "tenant_id", /must be a UUID/],
      ["an unknown tenant", () => ({ tenantId: randomUUID() }), "tenant_id", /unknown tenant/],
      ["a malformed source ip", () => ({ sourceIp: "999.1.2.3" }), "source_ip", /IPv4 or IPv6/],
      ["a source ip with a zone", () => ({ sourceIp: "fe80::1%eth0" }), "source_ip", /IPv4 or IPv6/],
      ["a created time over 5 minutes ahead", () => ({ created: timestampFromMs(Date.now() + 6 * 60_000) }), "created", /5 minutes/],
      ["an external id over 200 characters", () => ({ externalId: "e".repeat(201) }), "external_id", /at most 200/],
      ["a component over 100 characters", () => ({ component: "c".repeat(101) }), "component", /at most 100/],
      ["the registry's own component", () => ({ component: "tenant-registry" }), "component", /reserved/],
      ["the registry's component in capitals", () => ({ component: "Tenant-Registry" }), "component", /reserved/],
      ["the registry's component with a trailing space", () => ({ component: "tenant-registry " }), "component", /reserved/],
      ["the registry's component with another separator", () => ({ component: "tenant_registry" }), "component", /reserved/],
      ["the registry's component without a separator", () => ({ component: "TenantRegistry" }), "component", /reserved/],
      // A Cyrillic "е" (U+0435) in place of the Latin "e".
      ["the registry's component with a look-alike letter", () => ({ component: "t\u0435nant-registry" }), "component", /letters a-z/],
      ["a component with a control character", () => ({ component: "billing\u0007" }), "component", /letters a-z/],
      ["a description over 2000 characters", () => ({ description: "d".repeat(2001) }), "description", /at most 2000/],
      ["fields with a NUL character", () => ({ fields: { note: "a\u0000b" } }), 'fields["note"]', /NUL/],
    ];

    it.each(RULES)("rejects %s, naming the field, and stores none of the batch", async (_name, change, field, description) => {
      const tenant = await insertTenant(sqlClient);
      const events = [validEvent(tenant.id, { externalId: "first" }), validEvent(tenant.id, change(tenant.id)), validEvent(tenant.id)];
      const error = await failure(client().recordAuditEvents({ events }));
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.rawMessage).toContain(`events[1].${field}: `);
      const violations = violationsOf(error);
      expect(violations).toHaveLength(1);
      expect(violations[0]!.field).toBe(`events[1].${field}`);
      expect(violations[0]!.description).toMatch(description);
      expect(await countEvents({ tenantId: tenant.id })).toBe(0);
    });

    it("accepts a created time up to 5 minutes ahead of the server's clock (skew), not more", async () => {
      const tenant = await insertTenant(sqlClient);
      frozenNow = new Date("2025-06-01T12:00:00Z");
      try {
        const ahead = (ms: number) => validEvent(tenant.id, { created: timestampFromMs(frozenNow!.getTime() + ms) });
        expect((await client().recordAuditEvents({ events: [ahead(5 * 60_000)] })).recorded).toBe(1);
        const error = await failure(client().recordAuditEvents({ events: [ahead(5 * 60_000 + 1)] }));
        expect(violationsOf(error).map((v) => v.field)).toEqual(["events[0].created"]);
      } finally {
        frozenNow = undefined;
      }
    });

    it("names every violation of every event at once", async () => {
      const tenant = await insertTenant(sqlClient);
      const unknown = randomUUID();
      const error = await failure(
        client().recordAuditEvents({
          events: [validEvent(tenant.id), validEvent(tenant.id, { action: "", crud: "" }), validEvent(tenant.id), validEvent(unknown)],
        }),
      );
      expect(error.code).toBe(Code.InvalidArgument);
      expect(violationsOf(error).map((v) => v.field)).toEqual(["events[1].action", "events[1].crud", "events[3].tenant_id"]);
      expect(await countEvents({ tenantId: tenant.id })).toBe(0);
    });

    it("rejects an empty batch", async () => {
      const error = await failure(client().recordAuditEvents({ events: [] }));
      expect(error).toMatchObject({ code: Code.InvalidArgument, rawMessage: "events: at least one event is required" });
    });

    it("rejects a batch of 1,001 events and stores none of it", async () => {
      const tenant = await insertTenant(sqlClient);
      const events = Array.from({ length: 1001 }, (_, i) => validEvent(tenant.id, { externalId: `big-${i}` }));
      const error = await failure(client().recordAuditEvents({ events }));
      expect(error.code).toBe(Code.InvalidArgument);
      expect(violationsOf(error)).toEqual([{ field: "events", description: "at most 1000 events per call, got 1001" }]);
      expect(await countEvents({ tenantId: tenant.id })).toBe(0);
    });

    it("records a batch of 1,000 events", async () => {
      const tenant = await insertTenant(sqlClient);
      const run = unique();
      const events = Array.from({ length: 1000 }, (_, i) => validEvent(tenant.id, { externalId: `big-${run}-${i}`, fields: { i } }));
      expect(await client().recordAuditEvents({ events })).toMatchObject({ recorded: 1000, duplicates: 0 });
      expect(await countEvents({ tenantId: tenant.id })).toBe(1000);
    });

    it("lists at most 50 violations of a batch of invalid events and counts the rest", async () => {
      const tenant = await insertTenant(sqlClient);
      const events = Array.from({ length: 1000 }, () => validEvent(tenant.id, { action: "" }));
      const error = await failure(client().recordAuditEvents({ events }));
      expect(error.code).toBe(Code.InvalidArgument);
      const violations = violationsOf(error);
      expect(violations).toHaveLength(51);
      expect(violations[49]).toEqual({ field: "events[49].action", description: "is required" });
      expect(violations[50]).toEqual({ field: "events", description: "950 more violations not listed" });
    });

    it("skips events already recorded under the same component and external id", async () => {
      const tenant = await insertTenant(sqlClient);
      const run = unique();
      const id = (name: string) => `retry-${run}-${name}`;
      const batch = ["a", "b", "c"].map((name) => validEvent(tenant.id, { externalId: id(name) }));
      expect(await client().recordAuditEvents({ events: batch })).toMatchObject({ recorded: 3, duplicates: 0 });
      // The same batch again, e.g. after a timeout: nothing is duplicated.
      expect(await client().recordAuditEvents({ events: batch })).toMatchObject({ recorded: 0, duplicates: 3 });
      // Partly new.
      const partly = [...batch.slice(1), validEvent(tenant.id, { externalId: id("d") })];
      expect(await client().recordAuditEvents({ events: partly })).toMatchObject({ recorded: 1, duplicates: 2 });
      // The same external id from another component is another event.
      const other = validEvent(tenant.id, { externalId: id("a"), component: "compliance-api" });
      expect(await client().recordAuditEvents({ events: [other] })).toMatchObject({ recorded: 1, duplicates: 0 });
      // Twice in one batch: the first is kept.
      const twice = [validEvent(tenant.id, { externalId: id("e"), description: "first" }), validEvent(tenant.id, { externalId: id("e"), description: "second" })];
      expect(await client().recordAuditEvents({ events: twice })).toMatchObject({ recorded: 1, duplicates: 1 });
      // Without an external id nothing is ever a duplicate.
      const anonymousRetry = [validEvent(tenant.id), validEvent(tenant.id)];
      expect(await client().recordAuditEvents({ events: anonymousRetry })).toMatchObject({ recorded: 2, duplicates: 0 });

      expect(await countEvents({ tenantId: tenant.id })).toBe(3 + 1 + 1 + 1 + 2);
      const { rows } = await sqlClient.query("SELECT description FROM audit_log WHERE tenant_id = $1 AND external_id = $2", [tenant.id, id("e")]);
      expect(rows).toEqual([{ description: "first" }]);
    });
  });

  describe("ListAuditEvents", () => {
    const BASE = Date.parse("2025-01-01T00:00:00Z");
    const second = (n: number) => timestampFromMs(BASE + n * 1000);

    /** Five events, one second apart, named A..E in their descriptions. */
    async function tenantWithEvents(): Promise<string> {
      const tenant = await insertTenant(sqlClient);
      const e = (description: string, n: number, o: Partial<EventInit>) => validEvent(tenant.id, { description, created: second(n), ...o });
      await client().recordAuditEvents({
        events: [
          e("A", 1, { action: "tenant.create", crud: "c", actor: { id: "u1", type: "user" }, target: { id: "t1", type: "tenant" } }),
          e("B", 2, { action: "tenant.update", crud: "u", actor: { id: "u2", type: "user" }, target: { id: "t1", type: "tenant" }, isFailure: true }),
          e("C", 3, { action: "tenantx.create", crud: "c", actor: { id: "u1", type: "user" }, target: { id: "p1", type: "project" } }),
          e("D", 4, { action: "project.create", crud: "c", actor: { id: "u2", type: "user" }, target: { id: "p2", type: "project" }, isFailure: true }),
          e("E", 5, { action: "te%t.delete", crud: "d", actor: { id: "u3", type: "service" }, target: { id: "t1", type: "tenant" } }),
        ],
      });
      return tenant.id;
    }

    it.each<[string, Omit<ListInit, "tenantId">, string]>([
      ["no filter", {}, "EDCBA"],
      ["an exact action", { action: "tenant.create" }, "A"],
      ["an action prefix, which does not match tenantx.*", { action: "tenant.*" }, "BA"],
      ["a prefix with LIKE wildcards taken literally (%)", { action: "te%t.*" }, "E"],
      ["a prefix with LIKE wildcards taken literally (_)", { action: "ten_nt.*" }, ""],
      ["crud", { crud: "u" }, "B"],
      ["actor id", { actorId: "u2" }, "DB"],
      ["target id", { targetId: "t1" }, "EBA"],
      ["target type", { targetType: "project" }, "DC"],
      ["target id and type", { targetId: "t1", targetType: "tenant" }, "EBA"],
      ["a time range: start inclusive, end exclusive", { startTime: second(2), endTime: second(4) }, "CB"],
      ["a start time only", { startTime: second(4) }, "ED"],
      ["an end time only", { endTime: second(2) }, "A"],
      ["is_failure true", { isFailure: true }, "DB"],
      ["is_failure false", { isFailure: false }, "ECA"],
      ["several filters together", { action: "tenant.*", isFailure: true }, "B"],
    ])("filters by %s", async (_name, filters, expected) => {
      const tenantId = await tenantWithEvents();
      const events = await listAll({ tenantId, ...filters });
      expect(events.map((e) => e.description).join("")).toBe(expected);
    });

    it("walks every event exactly once, newest first, with keyset page tokens", async () => {
      const tenant = await insertTenant(sqlClient);
      await seedEvents(tenant.id, 25);
      const pages: string[][] = [];
      let pageToken = "";
      do {
        const page = await client().listAuditEvents({ tenantId: tenant.id, pageSize: 7, pageToken });
        pages.push(page.events.map((e) => e.id));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      expect(pages.map((p) => p.length)).toEqual([7, 7, 7, 4]);
      expect(pages.flat()).toEqual(await idsInOrder(tenant.id, "desc"));
    });

    it("ends with an empty token when the last page is exactly full", async () => {
      const tenant = await insertTenant(sqlClient);
      await seedEvents(tenant.id, 6);
      const first = await client().listAuditEvents({ tenantId: tenant.id, pageSize: 3 });
      const second = await client().listAuditEvents({ tenantId: tenant.id, pageSize: 3, pageToken: first.nextPageToken });
      expect(second.events).toHaveLength(3);
      expect(second.nextPageToken).toBe("");
    });

    it("rejects a page token reused with other filters, and one it did not issue", async () => {
      const tenant = await insertTenant(sqlClient);
      await seedEvents(tenant.id, 5);
      const first = await client().listAuditEvents({ tenantId: tenant.id, pageSize: 2, action: "seed.*" });
      expect(first.nextPageToken).not.toBe("");
      const changed = await failure(client().listAuditEvents({ tenantId: tenant.id, pageSize: 2, action: "seed.event", pageToken: first.nextPageToken }));
      expect(changed.code).toBe(Code.InvalidArgument);
      expect(violationsOf(changed)).toEqual([{ field: "page_token", description: "was issued for different filters" }]);
      const other = await failure(client().listAuditEvents({ tenantId: tenant.id, pageSize: 2, action: "seed.*", isFailure: false, pageToken: first.nextPageToken }));
      expect(other.code).toBe(Code.InvalidArgument);
      const garbage = await failure(client().listAuditEvents({ tenantId: tenant.id, pageToken: "not-a-token" }));
      expect(garbage).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringContaining("page_token") });
      // The page size may change between pages.
      const next = await client().listAuditEvents({ tenantId: tenant.id, pageSize: 3, action: "seed.*", pageToken: first.nextPageToken });
      expect(next.events).toHaveLength(3);
    });

    it("lists the registry's own events (anonymous, no external id) too", async () => {
      const tenant = await insertTenant(sqlClient);
      await sqlClient.query(
        `INSERT INTO audit_log (tenant_id, action, crud, target_id, target_name, target_type, is_anonymous, source_ip)
         VALUES ($1, 'project.create', 'c', 'p-1', 'Web', 'project', true, '10.0.0.1')`,
        [tenant.id],
      );
      const { events } = await client().listAuditEvents({ tenantId: tenant.id });
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ component: "tenant-registry", externalId: "", isAnonymous: true, sourceIp: "10.0.0.1", target: { id: "p-1", name: "Web", type: "project" } });
      expect(events[0]!.actor).toBeUndefined();
    });

    it("answers NotFound for an unknown tenant and InvalidArgument naming bad filters", async () => {
      await expect(client().listAuditEvents({ tenantId: randomUUID() })).rejects.toMatchObject({ code: Code.NotFound });
      const cases: [Partial<ListInit>, string][] = [
        [{ tenantId: "" }, "tenant_id"],
        [{ tenantId: "nope" }, "tenant_id"],
        [{ crud: "x" }, "crud"],
        [{ action: "tenant create" }, "action"],
        [{ action: ".*" }, "action"],
        [{ startTime: second(5), endTime: second(5) }, "end_time"],
        [{ pageSize: -1 }, "page_size"],
      ];
      for (const [req, field] of cases) {
        const error = await failure(client().listAuditEvents({ tenantId: randomUUID(), ...req }));
        expect(error.code, field).toBe(Code.InvalidArgument);
        expect(violationsOf(error).map((v) => v.field)).toEqual([field]);
      }
    });
  });

  describe("ExportAuditEvents", () => {
    it("streams every matching event oldest first", async () => {
      const tenant = await insertTenant(sqlClient);
      await seedEvents(tenant.id, 30);
      await client().recordAuditEvents({ events: [validEvent(tenant.id, { action: "other.thing" })] });
      const all = await exportAll({ tenantId: tenant.id });
      expect(all.map((e) => e.id)).toEqual(await idsInOrder(tenant.id, "asc"));
      const seeded = await exportAll({ tenantId: tenant.id, action: "seed.*" });
      expect(seeded).toHaveLength(30);
      expect(seeded.every((e) => e.action === "seed.event" && e.tenantId === tenant.id)).toBe(true);
      expect(seeded.map((e) => e.fields?.["i"] as number).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    });

    it("streams 2,500 events completely and in order across its internal batches", async () => {
      const tenant = await insertTenant(sqlClient);
      await seedEvents(tenant.id, 2500);
      const events = await exportAll({ tenantId: tenant.id });
      expect(events).toHaveLength(2500);
      expect(events.map((e) => e.id)).toEqual(await idsInOrder(tenant.id, "asc"));
      expect(new Set(events.map((e) => e.id)).size).toBe(2500);
    });

    it("sends its events in batches of up to 250 per message, never an empty one", async () => {
      const tenant = await insertTenant(sqlClient);
      await seedEvents(tenant.id, 1000); // an exact multiple: the last page read is empty
      const sizes: number[] = [];
      for await (const message of client().exportAuditEvents({ tenantId: tenant.id })) sizes.push(message.events.length);
      expect(sizes).toEqual([250, 250, 250, 250]);
    });

    it("cuts a message before it would pass about 1 MiB, so large events stay readable by a 4 MiB client", async () => {
      const tenant = await insertTenant(sqlClient);
      const blob = "x".repeat(60_000); // under the 64 KiB an event's fields may take
      await client().recordAuditEvents({
        events: Array.from({ length: 20 }, (_, i) => validEvent(tenant.id, { externalId: `big-${i}-${randomUUID()}`, fields: { blob } })),
      });
      await seedEvents(tenant.id, 3);
      const sizes: number[] = [];
      for await (const message of client().exportAuditEvents({ tenantId: tenant.id })) sizes.push(message.events.length);
      // 17 × 60 kB fit under 1 MiB, an 18th would not; the small events join the last batch.
      expect(sizes).toEqual([17, 6]);
    });

    it("stops when the client goes away", async () => {
      const tenant = await insertTenant(sqlClient);
      await seedEvents(tenant.id, 600);
      const abort = new AbortController();
      let received = 0;
      await expect(
        (async () => {
          for await (const message of client().exportAuditEvents({ tenantId: tenant.id }, { signal: abort.signal })) {
            received += message.events.length;
            abort.abort(); // after the first batch
          }
        })(),
      ).rejects.toMatchObject({ code: Code.Canceled });
      expect(received).toBe(250);
      // The server is still fine.
      expect((await client().listAuditEvents({ tenantId: tenant.id, pageSize: 1 })).events).toHaveLength(1);
    });

    it("answers NotFound for an unknown tenant and InvalidArgument without one", async () => {
      await expect(exportAll({ tenantId: randomUUID() })).rejects.toMatchObject({ code: Code.NotFound });
      await expect(exportAll({ tenantId: "" })).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "tenant_id: is required" });
    });
  });
});

describe("ExportAuditEvents through buf curl", () => {
  it("prints one JSON object per batch of events, oldest first", async () => {
    const tenant = await insertTenant(sqlClient);
    await seedEvents(tenant.id, 12);
    const { stdout } = await run(BUF, [
      "curl", "--http2-prior-knowledge", "-d", JSON.stringify({ tenantId: tenant.id }),
      `${server.baseUrl}/${SERVICE}/ExportAuditEvents`,
    ]);
    const messages = parseJsonSequence(stdout) as { events: { id: string; tenantId: string; action: string }[] }[];
    const events = messages.flatMap((m) => m.events);
    expect(events.map((e) => e.id)).toEqual(await idsInOrder(tenant.id, "asc"));
    expect(events[0]).toMatchObject({ tenantId: tenant.id, action: "seed.event" });
  });
});

/** Concatenated JSON values (buf curl prints one per streamed message). */
function parseJsonSequence(text: string): unknown[] {
  const values: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{") {
      if (depth++ === 0) start = i;
    } else if (ch === "}" && --depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
  }
  return values;
}

describe("REST", () => {
  it("POST /v1/audit/events records a batch; a retry records nothing twice", async () => {
    const tenant = await insertTenant(sqlClient);
    const body = {
      events: [
        { tenantId: tenant.id, action: "tenant.create", crud: "c", actor: { id: "u1", type: "user" }, externalId: "r-1", fields: { plan: "free" }, created: "2025-02-01T10:00:00Z" },
        { tenantId: tenant.id, action: "tenant.update", crud: "u", isAnonymous: true, externalId: "r-2", created: "2025-02-01T10:00:01Z" },
        { tenantId: tenant.id, action: "tenantx.create", crud: "c", isAnonymous: true, externalId: "r-3", created: "2025-02-01T10:00:02Z" },
        { tenantId: tenant.id, action: "project.create", crud: "c", isAnonymous: true, externalId: "r-4", created: "2025-02-01T10:00:03Z" },
        { tenantId: tenant.id, action: "tenant.delete", crud: "d", isAnonymous: true, externalId: "r-5", isFailure: true, created: "2025-02-01T10:00:04Z" },
      ],
    };
    const post = () => restFetch(`${server.baseUrl}/v1/audit/events`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const first = await post();
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ recorded: 5, duplicates: 0 });
    expect(await (await post()).json()).toEqual({ recorded: 0, duplicates: 5 });

    // GET with a prefix filter and a page size of 2, following nextPageToken.
    const url = (token = "") =>
      `${server.baseUrl}/v1/tenants/${tenant.id}/audit/events?action=tenant.*&pageSize=2${token ? `&pageToken=${encodeURIComponent(token)}` : ""}`;
    const page1 = await restFetch(url());
    expect(page1.status).toBe(200);
    const json1 = (await page1.json()) as { events: Record<string, unknown>[]; nextPageToken: string };
    expect(json1.events.map((e) => e["action"])).toEqual(["tenant.delete", "tenant.update"]);
    expect(json1.events[0]).toMatchObject({ tenantId: tenant.id, crud: "d", isFailure: true, isAnonymous: true, externalId: "r-5", component: "external", createdAt: "2025-02-01T10:00:04Z" });
    expect(json1.nextPageToken).not.toBe("");
    const json2 = (await (await restFetch(url(json1.nextPageToken))).json()) as { events: Record<string, unknown>[]; nextPageToken: string };
    expect(json2.events.map((e) => e["action"])).toEqual(["tenant.create"]);
    expect(json2.events[0]).toMatchObject({ actor: { id: "u1", type: "user" }, fields: { plan: "free" } });
    expect(json2.nextPageToken).toBe("");

    const filtered = await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}/audit/events?isFailure=true&startTime=2025-02-01T10:00:01Z`);
    expect(((await filtered.json()) as { events: { externalId: string }[] }).events.map((e) => e.externalId)).toEqual(["r-5"]);
  });

  it("answers errors with the REST error shape", async () => {
    const tenant = await insertTenant(sqlClient);
    const bad = await restFetch(`${server.baseUrl}/v1/audit/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ events: [{ tenantId: tenant.id, action: "x.y", crud: "c" }] }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      code: "invalid_argument",
      fieldViolations: [{ field: "events[0].actor", description: "is required unless is_anonymous is set" }],
    });
    const missing = await restFetch(`${server.baseUrl}/v1/tenants/${randomUUID()}/audit/events`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: "not_found" });
  });
});
