import { create, getOption, hasOption, ScalarType, type DescField, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { http as httpRule } from "../../gen/google/api/annotations_pb.js";
import { HttpRuleSchema, type HttpRule } from "../../gen/google/api/http_pb.js";

/**
 * The REST routes of the `google.api.http` annotations, compiled once at
 * start-up: every template parsed by the http.proto grammar, every path
 * variable, `body` and `response_body` resolved to field descriptors, and the
 * routes put in a trie keyed by path segment. A template that does not parse,
 * names a field the message does not have, or collides with another route
 * throws here, so a bad annotation stops the server from starting instead of
 * failing (or silently shadowing) at request time. Matching is a walk down the
 * trie, one map lookup per segment.
 */

/** A path variable: the fields it sets and the path segments it spans (end undefined: to the end). */
export type RouteVariable = {
  readonly fieldPath: readonly DescField[];
  readonly start: number;
  readonly end: number | undefined;
};

export type RestRoute = {
  readonly httpMethod: string;
  /** As written in the annotation, e.g. "/v1/tenants/{id}:suspend" (what tracing reports as http.route). */
  readonly template: string;
  readonly method: DescMethod;
  readonly variables: readonly RouteVariable[];
  /** "" (no body), "*" (the whole request message) or the top-level field the body fills. */
  readonly body: "" | "*" | DescField;
  /** undefined: the whole response message; otherwise the top-level field that is the body. */
  readonly responseBody: DescField | undefined;
};

export type RouteMatch =
  | { readonly kind: "found"; readonly route: RestRoute; readonly segments: readonly string[] }
  | { readonly kind: "method_not_allowed"; readonly allowed: readonly string[] }
  | { readonly kind: "not_found" };

type Leaf = Map<string, RestRoute>; // by HTTP method

type TrieNode = {
  readonly literals: Map<string, TrieNode>;
  wildcard: TrieNode | undefined; // one segment ("*" or a plain variable)
  readonly ends: Map<string, Leaf>; // by verb ("" for none)
  readonly catchAll: Map<string, Leaf>; // "**" to the end, by verb
};

type Segment = { readonly kind: "literal"; readonly value: string } | { readonly kind: "*" } | { readonly kind: "**" };

type ParsedTemplate = {
  readonly segments: readonly Segment[];
  readonly verb: string;
  readonly variables: readonly { readonly path: string; readonly start: number; readonly end: number | undefined }[];
};

export class RouteCompileError extends Error {}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Literals are unreserved URL characters (and percent escapes); "/", "{", "}", ":" and "*" are syntax.
const LITERAL = /^(?:[A-Za-z0-9\-._~!$&'()+,;=@]|%[0-9A-Fa-f]{2})+$/;

/**
 * Parses an http.proto path template:
 *   Template = "/" Segments [ Verb ] ;  Segments = Segment { "/" Segment } ;
 *   Segment  = "*" | "**" | LITERAL | Variable ;  Variable = "{" FieldPath [ "=" Segments ] "}" ;
 *   FieldPath = IDENT { "." IDENT } ;  Verb = ":" LITERAL ;
 * "**" may only be the last segment.
 */
export function parseTemplate(template: string): ParsedTemplate {
  const fail = (why: string): never => {
    throw new RouteCompileError(`path template "${template}": ${why}`);
  };
  if (!template.startsWith("/")) fail("must start with /");
  let pos = 1;
  const segments: Segment[] = [];
  const variables: { path: string; start: number; end: number | undefined }[] = [];
  let verb = "";

  const readLiteral = (): string => {
    const start = pos;
    while (pos < template.length && !"/{}:*=".includes(template[pos]!)) pos++;
    const value = template.slice(start, pos);
    if (!LITERAL.test(value)) fail(`bad literal "${value}" at ${start}`);
    return value;
  };
  const readSegment = (inVariable: boolean): void => {
    if (template.startsWith("**", pos)) {
      segments.push({ kind: "**" });
      pos += 2;
    } else if (template[pos] === "*") {
      segments.push({ kind: "*" });
      pos += 1;
    } else if (template[pos] === "{") {
      if (inVariable) fail("variables cannot nest");
      pos += 1;
      const close = template.indexOf("}", pos);
      if (close < 0) fail("unclosed {");
      const inner = template.slice(pos, close);
      const eq = inner.indexOf("=");
      const path = eq < 0 ? inner : inner.slice(0, eq);
      if (!path.split(".").every((part) => IDENT.test(part))) fail(`bad field path "${path}"`);
      const start = segments.length;
      if (eq < 0) {
        segments.push({ kind: "*" });
        pos = close;
      } else {
        pos += eq + 1;
        readSegments(true);
        if (pos !== close) fail(`unexpected "${template[pos]}" at ${pos}`);
      }
      pos = close + 1;
      const last = segments.at(-1)!;
      variables.push({ path, start, end: last.kind === "**" ? undefined : segments.length });
    } else {
      segments.push({ kind: "literal", value: readLiteral() });
    }
  };
  const readSegments = (inVariable: boolean): void => {
    readSegment(inVariable);
    while (template[pos] === "/") {
      pos += 1;
      readSegment(inVariable);
    }
  };

  readSegments(false);
  if (template[pos] === ":") {
    pos += 1;
    verb = readLiteral();
  }
  if (pos !== template.length) fail(`unexpected "${template[pos]}" at ${pos}`);
  if (segments.slice(0, -1).some((s) => s.kind === "**")) fail("** must be the last segment");
  const names = variables.map((v) => v.path);
  const repeated = names.find((n, i) => names.indexOf(n) !== i);
  if (repeated) fail(`variable "${repeated}" bound twice`);
  return { segments, verb, variables };
}

function resolveFieldPath(message: DescMessage, dotted: string): DescField[] | undefined {
  const path: DescField[] = [];
  let current: DescMessage | undefined = message;
  for (const part of dotted.split(".")) {
    const field: DescField | undefined = current?.fields.find((f) => f.name === part);
    if (!field) return undefined;
    path.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return path;
}

function compileRoute(rule: HttpRule, method: DescMethod, streaming = false): RestRoute {
  const name = `${method.parent.typeName}.${method.name}`;
  const fail = (why: string): never => {
    throw new RouteCompileError(`${name}: ${why}`);
  };
  const p = rule.pattern;
  if (p.case === undefined) fail("http rule has no pattern");
  const [httpMethod, template] = p.case === "custom" ? [p.value.kind.toUpperCase(), p.value.path] : [p.case!.toUpperCase(), p.value as string];
  const expected = streaming ? "server_streaming" : "unary";
  if (method.methodKind !== expected) fail(`this REST route maps ${expected} RPCs only, not ${method.methodKind}`);
  let parsed: ParsedTemplate;
  try {
    parsed = parseTemplate(template);
  } catch (error) {
    return fail((error as Error).message);
  }

  const variables = parsed.variables.map((v): RouteVariable => {
    const fieldPath = resolveFieldPath(method.input, v.path) ?? fail(`path variable "${v.path}" is not a field of ${method.input.typeName}`);
    const leaf = fieldPath.at(-1)!;
    if (leaf.fieldKind !== "scalar" && leaf.fieldKind !== "enum") fail(`path variable "${v.path}" must be a singular scalar or enum field`);
    if (fieldPath.slice(0, -1).some((f) => f.fieldKind !== "message")) fail(`path variable "${v.path}" crosses a non-message field`);
    return { fieldPath, start: v.start, end: v.end };
  });

  let body: RestRoute["body"] = "";
  if (rule.body === "*") body = "*";
  else if (rule.body !== "") body = method.input.fields.find((f) => f.name === rule.body) ?? fail(`body "${rule.body}" is not a field of ${method.input.typeName}`);
  if (body !== "" && httpMethod === "GET") fail("a GET route cannot take a body");

  const responseBody =
    rule.responseBody === ""
      ? undefined
      : (method.output.fields.find((f) => f.name === rule.responseBody) ?? fail(`response_body "${rule.responseBody}" is not a field of ${method.output.typeName}`));

  return { httpMethod, template, method, variables, body, responseBody };
}

function emptyNode(): TrieNode {
  return { literals: new Map(), wildcard: undefined, ends: new Map(), catchAll: new Map() };
}

function insert(root: TrieNode, route: RestRoute): void {
  const { segments, verb } = parseTemplate(route.template);
  let node = root;
  let leaves = node.ends;
  for (const segment of segments) {
    if (segment.kind === "**") {
      leaves = node.catchAll;
      break;
    }
    if (segment.kind === "*") {
      node = node.wildcard ??= emptyNode();
    } else {
      let next = node.literals.get(segment.value);
      if (!next) node.literals.set(segment.value, (next = emptyNode()));
      node = next;
    }
    leaves = node.ends;
  }
  let leaf = leaves.get(verb);
  if (!leaf) leaves.set(verb, (leaf = new Map()));
  const existing = leaf.get(route.httpMethod);
  if (existing) {
    throw new RouteCompileError(
      `${route.httpMethod} ${route.template} (${route.method.parent.typeName}.${route.method.name}) ` +
        `collides with ${existing.httpMethod} ${existing.template} (${existing.method.parent.typeName}.${existing.method.name})`,
    );
  }
  leaf.set(route.httpMethod, route);
}

/** Leaves a path reaches, literal segments before variables (so /v1/tenants/by-slug/x is not GetTenant). */
function* leavesFor(node: TrieNode, segments: readonly string[], i: number, verb: string): Generator<Leaf> {
  if (i === segments.length) {
    const leaf = node.ends.get(verb);
    if (leaf) yield leaf;
  } else {
    const literal = node.literals.get(segments[i]!);
    if (literal) yield* leavesFor(literal, segments, i + 1, verb);
    if (node.wildcard && segments[i] !== "") yield* leavesFor(node.wildcard, segments, i + 1, verb);
  }
  if (i < segments.length) {
    const leaf = node.catchAll.get(verb);
    if (leaf) yield leaf;
  }
}

export type RestRouter = {
  readonly routes: readonly RestRoute[];
  match(httpMethod: string, pathname: string): RouteMatch;
};

/**
 * A server-streaming RPC on a REST path, registered by hand: google.api.http
 * maps unary calls only, and a stream's body is a format of its own (rest.ts
 * writes it), not one JSON message. Same template syntax and trie as the rest.
 */
export type StreamingRoute = { readonly get: string; readonly method: DescMethod };

/** Every REST route of the services' annotations; throws RouteCompileError on a bad or colliding one. */
export function compileRestRoutes(services: readonly DescService[], streaming: readonly StreamingRoute[] = []): RestRouter {
  const root = emptyNode();
  const routes: RestRoute[] = [];
  for (const s of streaming) {
    const route = compileRoute(create(HttpRuleSchema, { pattern: { case: "get", value: s.get } }), s.method, true);
    insert(root, route);
    routes.push(route);
  }
  for (const service of services) {
    for (const method of service.methods) {
      if (!hasOption(method, httpRule)) continue;
      const rule = getOption(method, httpRule);
      for (const binding of rule.additionalBindings) {
        if (binding.additionalBindings.length > 0) throw new RouteCompileError(`${service.typeName}.${method.name}: additional bindings cannot nest`);
      }
      for (const r of [rule, ...rule.additionalBindings]) {
        const route = compileRoute(r, method);
        insert(root, route);
        routes.push(route);
      }
    }
  }

  const search = (httpMethod: string, segments: readonly string[], verb: string) => {
    let allowed: string[] | undefined;
    for (const leaf of leavesFor(root, segments, 0, verb)) {
      const route = leaf.get(httpMethod);
      if (route) return { route, allowed };
      allowed ??= [...leaf.keys()];
    }
    return { route: undefined, allowed };
  };

  return {
    routes,
    match(httpMethod, pathname) {
      if (!pathname.startsWith("/")) return { kind: "not_found" };
      const segments = pathname.slice(1).split("/");
      const last = segments.at(-1)!;
      const colon = last.lastIndexOf(":");
      // "/v1/tenants/abc:suspend" has verb "suspend" (GET on it is 405, not
      // GetTenant "abc:suspend"). Only where no route has that verb is the colon
      // part of the last segment, so a variable may still hold one.
      if (colon >= 0) {
        const stripped = [...segments.slice(0, -1), last.slice(0, colon)];
        const withVerb = search(httpMethod, stripped, last.slice(colon + 1));
        if (withVerb.route) return { kind: "found", route: withVerb.route, segments: stripped };
        if (withVerb.allowed) return { kind: "method_not_allowed", allowed: withVerb.allowed };
      }
      const plain = search(httpMethod, segments, "");
      if (plain.route) return { kind: "found", route: plain.route, segments };
      return plain.allowed ? { kind: "method_not_allowed", allowed: plain.allowed } : { kind: "not_found" };
    },
  };
}

/** The value of a path variable: its segments, percent-decoded; throws URIError on a bad escape. */
export function variableValue(variable: RouteVariable, segments: readonly string[]): string {
  if (variable.end === variable.start + 1) return decodeURIComponent(segments[variable.start]!);
  return segments.slice(variable.start, variable.end).map((p) => decodeURIComponent(p)).join("/");
}

/** Query parameter `key` resolved to fields: "a.b" or "aB.c"; undefined for no such (singular-message-path) field. */
export function queryFieldPath(message: DescMessage, key: string, lookups: FieldLookups): DescField[] | undefined {
  const path: DescField[] = [];
  let current: DescMessage | undefined = message;
  for (const part of key.split(".")) {
    if (!current) return undefined;
    const field = lookups.of(current).get(part);
    if (!field) return undefined;
    path.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return path;
}

/** Field lookup maps (proto name and JSON name) per message, built once per message. */
export type FieldLookups = { of(message: DescMessage): ReadonlyMap<string, DescField> };

export function createFieldLookups(): FieldLookups {
  const maps = new Map<DescMessage, Map<string, DescField>>();
  return {
    of(message) {
      let map = maps.get(message);
      if (!map) {
        map = new Map();
        for (const f of message.fields) {
          map.set(f.name, f);
          map.set(f.jsonName, f);
        }
        maps.set(message, map);
      }
      return map;
    },
  };
}

export const isBoolField = (field: DescField): boolean =>
  (field.fieldKind === "scalar" || (field.fieldKind === "list" && field.listKind === "scalar")) && field.scalar === ScalarType.BOOL;
