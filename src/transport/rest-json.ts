import type { DescEnum, DescField, DescMessage, JsonObject, JsonValue } from "@bufbuild/protobuf";

/**
 * REST speaks the original service's enum style: short lowercase labels
 * ("active", "product_not_granted") instead of protobuf JSON's full value names
 * (TENANT_STATUS_ACTIVE). These two walks convert between the styles along the
 * message schema; every other value passes through untouched.
 */
export function enumsToShort(desc: DescMessage, json: JsonValue): JsonValue {
  return walk(desc, json, (e, v) => (typeof v === "string" ? (e.values.find((x) => x.name === v)?.localName.toLowerCase() ?? v) : v));
}

export function enumsFromShort(desc: DescMessage, json: JsonValue): JsonValue {
  return walk(desc, json, (e, v) => {
    if (typeof v !== "string") return v;
    const wanted = v.toLowerCase();
    const match = e.values.find((x) => x.localName.toLowerCase() === wanted || x.name.toLowerCase() === wanted);
    return match?.name ?? v;
  });
}

type EnumMap = (e: DescEnum, value: JsonValue) => JsonValue;

function walk(desc: DescMessage, json: JsonValue, map: EnumMap): JsonValue {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return json;
  if (desc.typeName.startsWith("google.protobuf.")) return json; // well-known types have their own JSON forms
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(json)) {
    const field = desc.fields.find((f) => f.jsonName === key || f.name === key);
    out[key] = field ? walkField(field, value, map) : value;
  }
  return out;
}

function walkField(field: DescField, value: JsonValue, map: EnumMap): JsonValue {
  switch (field.fieldKind) {
    case "enum":
      return map(field.enum, value);
    case "message":
      return walk(field.message, value, map);
    case "list":
      if (!Array.isArray(value)) return value;
      if (field.listKind === "enum") return value.map((v) => map(field.enum, v));
      if (field.listKind === "message") return value.map((v) => walk(field.message, v, map));
      return value;
    case "map":
      if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
      if (field.mapKind === "enum") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, map(field.enum, v)]));
      if (field.mapKind === "message") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(field.message, v, map)]));
      return value;
    default:
      return value;
  }
}
