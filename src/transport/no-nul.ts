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
  switch (field.fieldKind) {
    case "message":
      return nulInValue(field.message, value, depth, path);
    case "list": {
      if (!Array.isArray(value)) return undefined;
      const element = field.listKind === "message" ? field.message : undefined;
      for (let i = 0; i < value.length; i++) {
        const found = nulInValue(element, value[i], depth, `${path}[${i}]`);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    case "map": {
      if (value === null || typeof value !== "object") return undefined;
      const element = field.mapKind === "message" ? field.message : undefined;
      for (const [key, item] of Object.entries(value as Fields)) {
        const at = keyPath(path, key);
        if (key.includes("\0")) return at;
        const found = nulInValue(element, item, depth, at);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    default:
      return nulInValue(undefined, value, depth, path);
  }
}

/** A string, or a message of type `desc` (plain JSON for Struct and its kin); anything else holds no string. */
function nulInValue(desc: DescMessage | undefined, value: unknown, depth: number, path: string): string | undefined {
  if (typeof value === "string") return value.includes("\0") ? path : undefined;
  if (desc === undefined || value === null || typeof value !== "object") return undefined;
  return JSON_TYPES.has(desc.typeName) ? nulInJson(value, depth + 1, path) : nulIn(desc, value as Fields, depth + 1, path);
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
