import type { DescMessage } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { isUuid } from "../domain/ids.js";

// The registry's own resource ids. Not free-text ids senders report (an audit
// actor's or target's id, external_id) nor an IdP's client_id: those are kept as sent.
const ID_FIELDS = new Set(["id", "tenant_id", "project_id", "key_id"]);
const IDS_FIELDS = new Set(["ids", "tenant_ids", "project_ids", "key_ids"]);
const FREE_TEXT_MESSAGES = /\.(AuditActor|AuditTarget)$/;
const MAX_DEPTH = 16;

type Fields = Record<string, unknown>;

/**
 * Every UUID in a resource id field (at any depth) is lower-cased
 * before anything looks at it: authorization, lookups and error messages all see
 * the one canonical spelling, so an answer cannot tell by an id's case whether
 * it exists in another tenant.
 */
export function createCanonicalIdsInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) canonicalise(req.method.input, req.message as unknown as Fields, 0);
    return next(req);
  };
}

function canonicalise(desc: DescMessage, message: Fields, depth: number): void {
  if (depth > MAX_DEPTH || FREE_TEXT_MESSAGES.test(desc.typeName)) return;
  for (const field of desc.fields) {
    // A oneof member lives under the oneof's name as { case, value }.
    let holder = message;
    let key = field.localName;
    if (field.oneof) {
      const chosen = message[field.oneof.localName] as Fields | undefined;
      if (chosen?.["case"] !== field.localName) continue;
      holder = chosen;
      key = "value";
    }
    const value = holder[key];
    if (field.fieldKind === "scalar" && typeof value === "string" && ID_FIELDS.has(field.name) && isUuid(value)) {
      holder[key] = value.toLowerCase();
    } else if (field.fieldKind === "list" && field.listKind === "scalar" && IDS_FIELDS.has(field.name) && Array.isArray(value)) {
      holder[key] = value.map((v: unknown) => (typeof v === "string" && isUuid(v) ? v.toLowerCase() : v));
    } else if (field.fieldKind === "message" && value !== null && typeof value === "object") {
      canonicalise(field.message, value as Fields, depth + 1);
    } else if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(value)) {
      for (const item of value) if (item !== null && typeof item === "object") canonicalise(field.message, item as Fields, depth + 1);
    }
  }
}
