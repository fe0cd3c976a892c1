import type { DescField, DescMessage, Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { insertAuditEvent } from "../db/queries/audit.js";
import type { Db } from "../db/queries/tenants.js";
import type { Crud } from "../domain/audit.js";
import { isUuid } from "../domain/ids.js";
import type { Logger } from "../logger.js";
import { actorKey, clientAddressKey, peerAddressKey, principalKey } from "../transport/context.js";
import { AuthenticationError, type Authenticator } from "./authenticate.js";
import { permissionsOf, RPC_POLICIES, type RpcPolicy, type TenantLocator } from "./permissions.js";
import { actorOf, isTenantScoped, type Principal } from "./principal.js";
import type { TenantLookup } from "./tenant-lookup.js";

export type AuthOptions = {
  /** Turns the Authorization header into a principal, or throws AuthenticationError. */
  readonly authenticate: Authenticator;
  /** Services anyone may call: health and reflection. */
  readonly openServices: ReadonlySet<string>;
  /** The one service whose RPCs RPC_POLICIES governs. */
  readonly governedService: string;
  readonly tenants: TenantLookup;
  readonly clientAddress: (peer: string | undefined, forwardedFor: string | null) => string | undefined;
  readonly db: Db;
  readonly logger: Logger;
};

/**
 * Authentication and authorization for every call, on every protocol (REST
 * calls pass through here too). Health and reflection stay open. A
 * tenant-scoped caller asking about another tenant gets NotFound, so existence
 * never leaks; lacking a permission on its own tenant gets PermissionDenied.
 */
export function createAuthInterceptor(options: AuthOptions): Interceptor {
  return (next) => async (req) => {
    if (options.openServices.has(req.service.typeName)) return next(req);
    const address = options.clientAddress(req.contextValues.get(peerAddressKey), req.header.get("x-forwarded-for"));
    req.contextValues.set(clientAddressKey, address);

    let principal: Principal;
    try {
      principal = await options.authenticate(req.header.get("authorization"));
    } catch (error) {
      if (error instanceof AuthenticationError) {
        throw new ConnectError(error.message, error.unavailable ? Code.Unavailable : Code.Unauthenticated);
      }
      throw error;
    }
    req.contextValues.set(actorKey, actorOf(principal));
    req.contextValues.set(principalKey, principal);

    const policy = req.service.typeName === options.governedService ? RPC_POLICIES[req.method.name] : undefined;
    if (!policy) throw new ConnectError(`no authorization policy for ${req.method.name}`, Code.PermissionDenied);

    // Server-streaming calls carry their one request message as a stream; read it once and replay it.
    let message: Message;
    if (req.stream) {
      const messages: Message[] = [];
      for await (const m of req.message) messages.push(m);
      message = messages[0]!;
      req = { ...req, message: (async function* () { yield* messages; })() };
    } else {
      message = req.message;
    }

    const denial = await authorize(principal, policy, req.method.input, message, options.tenants);
    if (denial) {
      if (policy.auditAction) await recordDenial(options, principal, policy, req.method.name, denial, address);
      throw new ConnectError(denial.message, denial.code);
    }
    return next(req);
  };
}

type Denial = { code: Code; message: string; requestedTenant?: string };

async function authorize(
  principal: Principal,
  policy: RpcPolicy,
  input: DescMessage,
  message: Message,
  tenants: TenantLookup,
): Promise<Denial | undefined> {
  const permitted = permissionsOf(principal).has(policy.permission);
  if (!isTenantScoped(principal)) {
    return permitted ? undefined : { code: Code.PermissionDenied, message: `permission denied: ${policy.permission} required` };
  }
  if (!principal.tenantId) {
    return { code: Code.PermissionDenied, message: "permission denied: tenant role without a tenant claim" };
  }
  const located = await locateTenant(policy.tenant, input, message, tenants);
  if (located.kind === "other-tenant-unknown") {
    // The request names nothing resolvable: the handler answers it (InvalidArgument / NotFound).
    return permitted ? undefined : { code: Code.PermissionDenied, message: `permission denied: ${policy.permission} required` };
  }
  if (located.kind === "platform") {
    return permitted ? undefined : { code: Code.PermissionDenied, message: `permission denied: ${policy.permission} required` };
  }
  if (located.tenantId !== principal.tenantId) {
    // Another tenant's resource: answer exactly as if it did not exist.
    return { code: Code.NotFound, message: located.notFound, requestedTenant: located.tenantId };
  }
  return permitted ? undefined : { code: Code.PermissionDenied, message: `permission denied: ${policy.permission} required` };
}

type Located =
  | { kind: "platform" }
  | { kind: "other-tenant-unknown" }
  | { kind: "tenant"; tenantId: string; notFound: string };

async function locateTenant(locator: TenantLocator, input: DescMessage, message: Message, tenants: TenantLookup): Promise<Located> {
  if (locator.by === "none") return { kind: "platform" };
  const value = fieldValue(input, message, locator.field);
  if (typeof value !== "string" || value === "") return { kind: "other-tenant-unknown" };
  let tenantId: string | undefined;
  let notFound = `tenant ${value} not found`;
  switch (locator.by) {
    case "tenant_id":
      tenantId = isUuid(value) ? value.toLowerCase() : undefined;
      break;
    case "slug":
      tenantId = await tenants.bySlug(value);
      break;
    case "id_or_slug":
      tenantId = isUuid(value) ? value.toLowerCase() : await tenants.bySlug(value);
      break;
    case "api_key_id":
      tenantId = isUuid(value) ? await tenants.byApiKeyId(value) : undefined;
      notFound = `api key ${value} not found`;
      break;
  }
  return tenantId ? { kind: "tenant", tenantId, notFound } : { kind: "other-tenant-unknown" };
}

/** Reads a (possibly dotted) proto field path such as "project.tenant_id" from a message. */
function fieldValue(desc: DescMessage, message: Message, path: string): unknown {
  let currentDesc: DescMessage | undefined = desc;
  let current: unknown = message;
  for (const part of path.split(".")) {
    const field: DescField | undefined = currentDesc?.fields.find((f) => f.name === part);
    if (!field || current === null || typeof current !== "object") return undefined;
    current = (current as Record<string, unknown>)[field.localName];
    currentDesc = field.fieldKind === "message" ? field.message : undefined;
  }
  return current;
}

const CRUD_OF_VERB: Record<string, Crud> = { create: "c", delete: "d", revoke: "d", record: "c" };

/** A denied call to a mutating RPC is itself an audit event, marked is_failure. */
async function recordDenial(
  options: AuthOptions,
  principal: Principal,
  policy: RpcPolicy,
  method: string,
  denial: Denial,
  sourceIp: string | undefined,
): Promise<void> {
  const action = policy.auditAction!;
  try {
    await insertAuditEvent(
      options.db,
      {
        tenantId: principal.tenantId && isUuid(principal.tenantId) ? principal.tenantId : null,
        action,
        crud: CRUD_OF_VERB[action.split(".").at(-1)!] ?? "u",
        target: { id: denial.requestedTenant ?? method, type: denial.requestedTenant ? "tenant" : "rpc", name: method },
        description: `denied: ${denial.message}`,
        fields: { rpc: method, permission: policy.permission, code: Code[denial.code] },
        isFailure: true,
      },
      { actor: actorOf(principal), sourceIp },
    );
  } catch (error) {
    // The principal's tenant may be gone, or the database down: the denial stands either way.
    options.logger.warn({ err: error, method }, "could not record a denied call in the audit log");
  }
}
