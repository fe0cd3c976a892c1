import type { DescField, DescMessage, Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { insertAuditEvent } from "../db/queries/audit.js";
import type { Db } from "../db/queries/tenants.js";
import type { Crud } from "../domain/audit.js";
import { PermissionDeniedError, type DenialAudit } from "../domain/errors.js";
import { isUuid } from "../domain/ids.js";
import type { Logger } from "../logger.js";
import type { OutcomeMetrics } from "../observability/metrics.js";
import { actorKey, clientAddressKey, peerAddressKey, principalKey } from "../transport/context.js";
import { AuthenticationError, type Authenticator } from "./authenticate.js";
import { hasPlatformPermission, RPC_POLICIES, tenantPermissionsOf, type RpcPolicy, type TenantLocator } from "./permissions.js";
import { actorOf, type Principal } from "./principal.js";
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
  readonly metrics: OutcomeMetrics;
};

/**
 * Authentication and authorization for every call, on every protocol (REST
 * calls pass through here too). Health and reflection stay open. A
 * tenant-scoped caller asking about another tenant gets NotFound, so existence
 * never leaks; lacking a permission on its own tenant gets PermissionDenied.
 */
export function createAuthInterceptor(options: AuthOptions): Interceptor {
  const denialBudget = createDenialBudget();
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

    // The one place denied calls are counted and audited: here, and for what a handler refuses below.
    const denied = async (denial: Denial, audit: DenialAudit = {}) => {
      options.metrics.callDenied(req.method.name, denial.code === Code.NotFound ? "not_found" : "permission_denied");
      if (!policy.auditAction) return;
      if (denialBudget.take(`${principal.kind}:${principal.id}`)) {
        await recordDenial(options, principal, policy, req.method.name, denial, address, audit);
      } else {
        options.logger.warn({ actor: principal.id, rpc: req.method.name }, "denied call not audited: too many denials from this principal this minute");
      }
    };

    const denial = await authorize(principal, policy, req.method.input, message, options.tenants);
    if (denial) {
      await denied(denial);
      throw new ConnectError(denial.message, denial.code);
    }
    // Mutating RPCs are unary: a handler's refusal of what the caller asked (more scopes
    // than a key holds, a domain only the platform assigns) is a denied call too.
    if (req.stream || !policy.auditAction) return next(req);
    try {
      return await next(req);
    } catch (error) {
      if (error instanceof PermissionDeniedError) {
        const requested = policy.tenant.by === "none" ? undefined : fieldValue(req.method.input, message, policy.tenant.field);
        await denied({ code: Code.PermissionDenied, message: error.message, requested: typeof requested === "string" ? shown(requested) : undefined }, error.audit);
      }
      throw error;
    }
  };
}

type Denial = { code: Code; message: string; requested?: string | undefined };

/**
 * Platform roles (platform-admin, service) act on every tenant. Everything else
 * a principal holds (tenant roles, an API key's scopes) counts on its own
 * tenant only, so holding a platform role never widens a tenant role's reach,
 * and vice versa. Whatever cannot be shown to be the caller's own tenant
 * answers NotFound, whether it belongs to another tenant or to nobody, so
 * existence never leaks through the choice of error.
 */
async function authorize(
  principal: Principal,
  policy: RpcPolicy,
  input: DescMessage,
  message: Message,
  tenants: TenantLookup,
): Promise<Denial | undefined> {
  const denied: Denial = { code: Code.PermissionDenied, message: `permission denied: ${policy.permission} required` };
  if (hasPlatformPermission(principal, policy.permission)) return undefined;
  if (policy.tenant.by === "none") return denied;
  if (!principal.tenantId) {
    return principal.roles.length > 0 ? { ...denied, message: "permission denied: tenant role without a tenant claim" } : denied;
  }
  const permitted = tenantPermissionsOf(principal).has(policy.permission);
  const located = await locateTenant(policy.tenant, input, message, tenants);
  if (located.kind === "platform") return { ...denied, message: `permission denied: ${policy.permission} on the platform's own chain is for platform principals` };
  if (located.kind === "tenant" && located.tenantId === principal.tenantId) return permitted ? undefined : denied;
  if (located.kind === "unresolved" && permitted) {
    // Nothing to resolve (an unknown slug or key, a malformed id): the handler answers
    // it exactly as it would for the caller's own tenant (NotFound / InvalidArgument).
    return undefined;
  }
  return { code: Code.NotFound, message: located.notFound, requested: located.requested };
}

type Located =
  | { kind: "platform" }
  | { kind: "unresolved"; requested: string; notFound: string }
  | { kind: "tenant"; tenantId: string; requested: string; notFound: string };

/**
 * What a denial keeps of the id or slug the caller sent, in its answer and in the audit log: a
 * real one is far shorter (a UUID, a 63-character slug). Whole, 4 MiB of junk sent by a caller
 * without the permission became 8 MiB of audit event per call, and a page of them gigabytes.
 */
const REQUESTED_SHOWN = 200;

function shown(value: string): string {
  return value.length <= REQUESTED_SHOWN ? value : `${value.slice(0, REQUESTED_SHOWN)}… (${value.length} characters)`;
}

async function locateTenant(locator: TenantLocator, input: DescMessage, message: Message, tenants: TenantLookup): Promise<Located> {
  const raw = locator.by === "none" ? undefined : fieldValue(input, message, locator.field);
  const value = typeof raw === "string" ? raw : "";
  const requested = shown(value);
  let tenantId: string | undefined;
  let notFound = `tenant ${requested} not found`;
  switch (locator.by) {
    case "tenant_id":
      // Not "unresolved": the handler would answer it with the platform's chain, not NotFound.
      if (value === "" && locator.emptyIsPlatform) return { kind: "platform" };
      tenantId = isUuid(value) ? value.toLowerCase() : undefined;
      break;
    case "slug":
      tenantId = await tenants.bySlug(value);
      break;
    case "id_or_slug":
      tenantId = isUuid(value) ? value.toLowerCase() : await tenants.bySlug(value);
      break;
    case "none":
      break;
    case "api_key_id":
      tenantId = isUuid(value) ? await tenants.byApiKeyId(value) : undefined;
      notFound = `api key ${requested} not found`;
      break;
  }
  return tenantId ? { kind: "tenant", tenantId, requested, notFound } : { kind: "unresolved", requested, notFound };
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
  audit: DenialAudit,
): Promise<void> {
  const action = policy.auditAction!;
  try {
    await insertAuditEvent(
      options.db,
      {
        tenantId: principal.tenantId && isUuid(principal.tenantId) ? principal.tenantId : null,
        action,
        crud: CRUD_OF_VERB[action.split(".").at(-1)!] ?? "u",
        // What the caller asked for, as it asked: never an id it could not already see.
        target: audit.target ?? { id: denial.requested || method, type: "rpc", name: method },
        description: `denied: ${denial.message}`,
        fields: { rpc: method, permission: audit.permission ?? policy.permission, code: Code[denial.code], ...audit.fields },
        isFailure: true,
      },
      { actor: actorOf(principal), sourceIp },
    );
    options.metrics.auditEventsWritten(1);
  } catch (error) {
    // The principal's tenant may be gone, or the database down: the denial stands either way.
    options.logger.warn({ err: error, method }, "could not record a denied call in the audit log");
  }
}

const DENIAL_EVENTS_PER_MINUTE = 30;

/**
 * Denied calls are audited, but a principal hammering the API must not be able
 * to flood the audit log: a token bucket per principal, refilled continuously,
 * allows bursts of 30 and 30 a minute after that.
 */
function createDenialBudget(now: () => number = Date.now) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refillPerMs = DENIAL_EVENTS_PER_MINUTE / 60_000;
  return {
    take(principal: string): boolean {
      const t = now();
      const bucket = buckets.get(principal) ?? { tokens: DENIAL_EVENTS_PER_MINUTE, at: t };
      bucket.tokens = Math.min(DENIAL_EVENTS_PER_MINUTE, bucket.tokens + (t - bucket.at) * refillPerMs);
      bucket.at = t;
      if (buckets.size > 10_000) buckets.clear(); // bounded memory; a reset only grants fresh bursts
      buckets.set(principal, bucket);
      if (bucket.tokens < 1) return false;
      bucket.tokens -= 1;
      return true;
    },
  };
}
