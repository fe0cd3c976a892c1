import { once } from "node:events";
import type http from "node:http";
import type http2 from "node:http2";
import { toJson, type JsonObject, type JsonWriteOptions } from "@bufbuild/protobuf";
import { AuditCheckpointSchema, AuditEventSchema, type AuditEvent } from "../../gen/breakpilot/tenantregistry/v1/audit_pb.js";
import type { ExportAuditEventsRequest, ExportAuditEventsResponse } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { GENESIS_HASH, type AuditSigner, type Checkpoint } from "../domain/audit-chain.js";
import { toInstant } from "../domain/audit-query.js";
import type { ChainBaseReader } from "../service/audit-chain.js";
import { checkpointToProto } from "./convert-audit.js";

/**
 * The body of `GET /v1/tenants/{tenant_id}/audit/events:export`: the events
 * ExportAuditEvents streams, written as they arrive (a write waits for the
 * socket to drain, so memory stays bounded however many match).
 *
 * ndjson: one `{"event":{…}}` line per event (the REST JSON of an
 * AuditEvent, as ListAuditEvents prints events), and after a
 * full export (no filter but the tenant) one `{"checkpoint":{…}}` line: the
 * last event's sequence and hash signed by the service, so cutting the file's
 * tail shows (`tenant-registry audit verify --file`). A full export of a
 * chain that retention has cut starts with one `{"base":{…}}` line: the
 * signed retention cut its first event follows, so the file verifies from there.
 * csv: a header and one row per event; no checkpoint (a row kind column would
 * make every consumer skip it; verify ndjson exports instead).
 */

export const EXPORT_FORMATS = ["ndjson", "csv"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

const CONTENT_TYPES: Record<ExportFormat, string> = {
  ndjson: "application/x-ndjson; charset=utf-8",
  csv: "text/csv; charset=utf-8",
};

const CSV_COLUMNS = [
  "sequence",
  "hash",
  "previous_hash",
  "chain_id",
  "id",
  "created_at",
  "tenant_id",
  "action",
  "crud",
  "actor_id",
  "actor_name",
  "actor_type",
  "actor_href",
  "target_id",
  "target_name",
  "target_type",
  "source_ip",
  "description",
  "fields",
  "is_failure",
  "is_anonymous",
  "component",
  "external_id",
] as const;

/**
 * RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled.
 * A cell a spreadsheet would run as a formula (starting with =, +, -, @, a tab
 * or a carriage return: OWASP's CSV injection list) gets a leading `'`, so an
 * actor name such as `=HYPERLINK(…)` reaching an auditor's spreadsheet stays text.
 */
function csvField(value: string): string {
  const cell = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
}

function csvRow(json: JsonObject): string {
  const actor = (json["actor"] ?? {}) as JsonObject;
  const target = (json["target"] ?? {}) as JsonObject;
  const values: Record<(typeof CSV_COLUMNS)[number], unknown> = {
    sequence: json["sequence"],
    hash: json["hash"],
    previous_hash: json["previousHash"],
    chain_id: json["chainId"],
    id: json["id"],
    created_at: json["createdAt"],
    tenant_id: json["tenantId"],
    action: json["action"],
    crud: json["crud"],
    actor_id: actor["id"],
    actor_name: actor["name"],
    actor_type: actor["type"],
    actor_href: actor["href"],
    target_id: target["id"],
    target_name: target["name"],
    target_type: target["type"],
    source_ip: json["sourceIp"],
    description: json["description"],
    fields: JSON.stringify(json["fields"] ?? {}),
    is_failure: json["isFailure"],
    is_anonymous: json["isAnonymous"],
    component: json["component"],
    external_id: json["externalId"],
  };
  return CSV_COLUMNS.map((c) => csvField(values[c] === undefined ? "" : String(values[c]))).join(",") + "\r\n";
}

/** Only the tenant: every event of its chain, so the tail may be signed. */
export function isFullExport(req: ExportAuditEventsRequest): boolean {
  return (
    req.action === "" &&
    req.crud === "" &&
    req.actorId === "" &&
    req.targetId === "" &&
    req.targetType === "" &&
    req.startTime === undefined &&
    req.endTime === undefined &&
    req.isFailure === undefined
  );
}

// Waits for the socket to drain; the call's signal ends the wait when the client goes away.
async function write(res: NodeResponse, chunk: string, signal: AbortSignal): Promise<void> {
  if (!(res as http.ServerResponse).write(chunk)) await once(res, "drain", { signal });
}

/**
 * Writes the export. `first` is the stream's first result, already pulled by
 * the caller so auth and validation errors still answer as JSON errors. A
 * failure after the headers went out destroys the response: the client sees a
 * broken transfer, never a clean end that would pass a partial export off as
 * complete.
 */
export async function writeAuditExport(options: {
  readonly res: NodeResponse;
  readonly format: ExportFormat;
  readonly request: ExportAuditEventsRequest;
  readonly first: IteratorResult<ExportAuditEventsResponse>;
  readonly rest: AsyncIterator<ExportAuditEventsResponse>;
  readonly signer: AuditSigner | undefined;
  readonly chainBase: ChainBaseReader | undefined;
  readonly writeOptions: Partial<JsonWriteOptions>;
  readonly clock: () => Date;
  readonly signal: AbortSignal;
}): Promise<void> {
  const { res, format, writeOptions, signal } = options;
  const chainId = options.request.tenantId.toLowerCase();
  // Only a full ndjson export is a verifiable file: it gets a base (when cut) and a checkpoint.
  const signed = format === "ndjson" && options.signer !== undefined && isFullExport(options.request);
  const checkpointLine = (key: "base" | "checkpoint", c: Checkpoint) =>
    JSON.stringify({ [key]: toJson(AuditCheckpointSchema, checkpointToProto(c), writeOptions) }) + "\n";
  res.statusCode = 200;
  res.setHeader("content-type", CONTENT_TYPES[format]);
  if (format === "csv") await write(res, CSV_COLUMNS.join(",") + "\r\n", signal);
  let last: AuditEvent | undefined;
  // A chain emptied by retention still starts at its base: the checkpoint signs that.
  let base: { sequence: bigint; hash: string } = { sequence: 0n, hash: GENESIS_HASH };
  if (signed && options.chainBase) {
    const firstEvent = options.first.done ? undefined : options.first.value.events[0];
    // From the first event read (not the head read before it), so a cut made meanwhile cannot disagree.
    if (!firstEvent) base = await options.chainBase.baseOf(chainId);
    const baseSequence = firstEvent ? firstEvent.sequence - 1n : base.sequence;
    const cut = baseSequence > 0n ? await options.chainBase.cutAt(chainId, baseSequence) : null;
    if (cut) await write(res, checkpointLine("base", cut), signal);
  }
  for (let next = options.first; !next.done; next = await options.rest.next()) {
    // One write per streamed message (up to 250 events, near 1 MiB): one line per event inside it.
    let chunk = "";
    for (const event of next.value.events) {
      const json = toJson(AuditEventSchema, event, writeOptions) as JsonObject;
      chunk += format === "csv" ? csvRow(json) : JSON.stringify({ event: json }) + "\n";
      last = event;
    }
    if (chunk !== "") await write(res, chunk, signal);
  }
  if (signed) {
    // Signs what was just read: the export's own tail (its base for a chain with no events).
    const tail = last ? { sequence: last.sequence, hash: last.hash } : base;
    await write(res, checkpointLine("checkpoint", options.signer!.sign({ chainId, ...tail }, toInstant(options.clock()))), signal);
  }
  res.end();
}
