import type { DescField, DescMessage } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { InvalidArgumentError } from "../domain/errors.js";

// Struct, Value and ListValue fields are plain JSON in protobuf-es messages.
const JSON_TYPES = new Set(["google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"]);
const MAX_DEPTH = 128;

type Fields = Record<string, unknown>;

/**
 * PostgreSQL's text and jsonb cannot hold U+0000, so no string in a request may
 * (a field, a map key or value, a string in a Struct, at any depth): the call is
 * refused before anything reads it, naming the field, instead of failing in the
 * database with a message that names nothing (or, in jsonb, as Internal).
 */
export function createNoNulInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) {
      const path = nulIn(req.method.input, req.message as unknown as Fields, 0);
      if (path !== undefined) throw InvalidArgumentError.field(path, "must not contain a NUL character (U+0000)");
    }
    return next(req);
  };
}

const keyPath = (path: string, key: string) => `${path}[${JSON.stringify(key)}]`;

/** The path of the first string in `message` that holds a NUL, or undefined. */
function nulIn(desc: DescMessage, message: Fields, depth: number, prefix = ""): string | undefined {
  if (depth > MAX_DEPTH) return undefined;
  for (const field of desc.fields) {
    let value: unknown;
    if (field.oneof) {
      // A oneof member lives under the oneof's name as { case, value }.
      const chosen = message[field.oneof.localName] as Fields | undefined;
      if (chosen?.["case"] !== field.localName) continue;
      value = chosen["value"];
    } else {
      value = message[field.localName];
    }
    const found = nulInField(field, value, depth, prefix === "" ? field.name : `${prefix}.${field.name}`);
    if (found !== undefined) return found;
  }
  return undefined;
}

function nulInField(field: DescField, value: unknown, depth: number, path: string): string | undefined {
  if (typeof value === "string") return value.includes("\0") ? path : undefined;
  if (value === null || typeof value !== "object") return undefined;
  switch (field.fieldKind) {
    case "message":
      if (JSON_TYPES.has(field.message.typeName)) return nulInJson(value, depth + 1, path);
      return nulIn(field.message, value as Fields, depth + 1, path);
    case "list":
      if (!Array.isArray(value)) return undefined;
      for (let i = 0; i < value.length; i++) {
        const item: unknown = value[i];
        const at = `${path}[${i}]`;
        const found =
          typeof item === "string"
            ? item.includes("\0") ? at : undefined
            : field.listKind === "message" && item !== null && typeof item === "object"
              ? JSON_TYPES.has(field.message.typeName) ? nulInJson(item, depth + 1, at) : nulIn(field.message, item as Fields, depth + 1, at)
              : undefined;
        if (found !== undefined) return found;
      }
      return undefined;
    case "map":
      for (const [key, item] of Object.entries(value as Fields)) {
        const at = keyPath(path, key);
        if (key.includes("\0")) return at;
        if (typeof item === "string" && item.includes("\0")) return at;
        if (field.mapKind === "message" && item !== null && typeof item === "object") {
          const found = JSON_TYPES.has(field.message.typeName) ? nulInJson(item, depth + 1, at) : nulIn(field.message, item as Fields, depth + 1, at);
          if (found !== undefined) return found;
        }
      }
      return undefined;
    default:
      return undefined;
  }
}

function nulInJson(value: unknown, depth: number, path: string): string | undefined {
  if (typeof value === "string") return value.includes("\0") ? path : undefined;
  if (depth > MAX_DEPTH || value === null || typeof value !== "object") return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = nulInJson(value[i], depth + 1, `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value as Fields)) {
    const at = keyPath(path, key);
    if (key.includes("\0")) return at;
    const found = nulInJson(item, depth + 1, at);
    if (found !== undefined) return found;
  }
  return undefined;
}
