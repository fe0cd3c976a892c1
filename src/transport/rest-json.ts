import type { DescEnum, DescField, DescMessage, JsonObject, JsonValue } from "@bufbuild/protobuf";

/**
 * REST speaks the original service's enum style: short lowercase labels
 * ("active", "product_not_granted") instead of protobuf JSON's full value names
 * (TENANT_STATUS_ACTIVE). An EnumStyle converts between the two along a message
 * schema. What to convert is planned once per message (only the fields that can
 * hold an enum, with a map per enum), so a call does one map lookup per enum
 * value and copies only the objects on the way to one; every other value is
 * passed through as it is.
 */
export type EnumStyle = {
  /** The JSON of a `desc` message with its enum values converted. */
  convert(desc: DescMessage, json: JsonValue): JsonValue;
};

type Convert = (value: JsonValue) => JsonValue;
/** Per JSON key (proto and JSON name) of a message, how to convert that field's value. */
type Plan = Map<string, Convert>;

function createEnumStyle(labels: (e: DescEnum) => ReadonlyMap<string, string>, normalise: (label: string) => string): EnumStyle {
  const enumMaps = new Map<DescEnum, Convert>();
  const plans = new Map<DescMessage, Plan>();

  const enumConvert = (e: DescEnum): Convert => {
    let convert = enumMaps.get(e);
    if (!convert) {
      const map = labels(e);
      convert = (v) => (typeof v === "string" ? (map.get(normalise(v)) ?? v) : v);
      enumMaps.set(e, convert);
    }
    return convert;
  };

  const objectOf = (convert: Convert): Convert => (value) => {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
    const out: JsonObject = {};
    for (const key in value) out[key] = convert(value[key]!);
    return out;
  };
  const listOf = (convert: Convert): Convert => (value) => (Array.isArray(value) ? value.map(convert) : value);

  const messageConvert = (desc: DescMessage): Convert | undefined => {
    const plan = planOf(desc);
    if (plan.size === 0 && !planning.has(desc)) return undefined;
    return (value) => apply(plan, value);
  };

  const fieldConvert = (field: DescField): Convert | undefined => {
    switch (field.fieldKind) {
      case "enum":
        return enumConvert(field.enum);
      case "message":
        return messageConvert(field.message);
      case "list":
        if (field.listKind === "enum") return listOf(enumConvert(field.enum));
        if (field.listKind === "message") {
          const inner = messageConvert(field.message);
          return inner && listOf(inner);
        }
        return undefined;
      case "map":
        if (field.mapKind === "enum") return objectOf(enumConvert(field.enum));
        if (field.mapKind === "message") {
          const inner = messageConvert(field.message);
          return inner && objectOf(inner);
        }
        return undefined;
      default:
        return undefined;
    }
  };

  // Messages whose plan is being built (recursive schemas): converted by reference.
  const planning = new Set<DescMessage>();
  const planOf = (desc: DescMessage): Plan => {
    let plan = plans.get(desc);
    if (plan) return plan;
    plan = new Map();
    plans.set(desc, plan);
    // Well-known types have their own JSON forms and no enums of ours.
    if (desc.typeName.startsWith("google.protobuf.")) return plan;
    planning.add(desc);
    for (const field of desc.fields) {
      const convert = fieldConvert(field);
      if (!convert) continue;
      plan.set(field.jsonName, convert);
      plan.set(field.name, convert);
    }
    planning.delete(desc);
    return plan;
  };

  const apply = (plan: Plan, json: JsonValue): JsonValue => {
    if (plan.size === 0 || json === null || typeof json !== "object" || Array.isArray(json)) return json;
    let out: JsonObject | undefined;
    for (const key in json) {
      const convert = plan.get(key);
      if (!convert) continue;
      const before = json[key]!;
      const after = convert(before);
      if (after === before) continue;
      out ??= { ...json };
      out[key] = after;
    }
    return out ?? json;
  };

  return { convert: (desc, json) => apply(planOf(desc), json) };
}

/** Full value names to short lowercase labels (TENANT_STATUS_ACTIVE → active); unknown names pass. */
export function createEnumsToShort(): EnumStyle {
  return createEnumStyle((e) => new Map(e.values.map((v) => [v.name, v.localName.toLowerCase()])), (label) => label);
}

/** Short labels in any case, or full names, to full value names; unknown labels pass to protobuf's parser. */
export function createEnumsFromShort(): EnumStyle {
  return createEnumStyle(
    (e) => new Map(e.values.flatMap((v) => [[v.localName.toLowerCase(), v.name] as const, [v.name.toLowerCase(), v.name] as const])),
    (label) => label.toLowerCase(),
  );
}

/** One-off conversions (tests, tools); the REST handler builds its styles once and keeps them. */
export function enumsToShort(desc: DescMessage, json: JsonValue): JsonValue {
  return createEnumsToShort().convert(desc, json);
}

export function enumsFromShort(desc: DescMessage, json: JsonValue): JsonValue {
  return createEnumsFromShort().convert(desc, json);
}
