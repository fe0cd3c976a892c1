import { createHash } from "node:crypto";
import { toJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";

/**
 * A stable hash of a request, without its idempotency key: a retry must be the
 * same request, and map order or JSON key order must not make it look different.
 */
export function requestFingerprint<D extends DescMessage>(schema: D, message: MessageShape<D>): Buffer {
  const json = toJson(schema, message, { alwaysEmitImplicit: false }) as Record<string, JsonValue>;
  delete json["idempotencyKey"];
  return createHash("sha256").update(canonical(json)).digest();
}

/** JSON with object keys sorted at every depth: equal values give equal text. */
export function canonical(value: JsonValue): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k]!)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
