import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ForeignKeyIntegrityConstraintViolationError } from "slonik";
import { ProductCode as ProtoProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import {
  CreateApiKeyRequestSchema,
  VerifyApiKeyResponseSchema,
  type TenantRegistryService,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import {
  findApiKeyById,
  findApiKeyTenantId,
  insertApiKey,
  listApiKeysByTenant,
  lockApiKey,
  revokeApiKey,
  rotateApiKeySecret,
  type ApiKeyCursor,
} from "../db/queries/api-keys.js";
import { claimIdempotencyKey } from "../db/queries/idempotency.js";
import { findTenantRef, lockTenantForChange, type Db, type TenantWriter } from "../db/queries/tenants.js";
import { writerOf } from "./tenant-writer.js";
import {
  createIdempotencyScope,
  dedupeScopes,
  generateApiKeyToken,
  MAX_GRACE_PERIOD_MS,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  MAX_SCOPES,
  SCOPE_PATTERN,
  type ApiKey,
  type GeneratedToken,
} from "../domain/api-key.js";
import { grantDenial, manageDenial, scopesNotHeld } from "../domain/api-key-grants.js";
import type { AuditEventDraft } from "../domain/audit.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../domain/errors.js";
import { isUuid } from "../domain/ids.js";
import { cacheKey } from "../cache/change-notice.js";
import { auditContextOf, cacheNoteKey, principalKey } from "../transport/context.js";
import { tenantToProto } from "../transport/convert.js";
import { apiKeyToProto, verifyCodeToProto } from "../transport/convert-api-key.js";
import { productFromProto } from "../transport/convert-entitlement.js";
import type { ApiKeyVerifier } from "./api-key-verifier.js";
import { audited } from "./audited.js";
import type { ServiceDeps } from "./deps.js";
import { requestFingerprint } from "./idempotency.js";
import { decodePageToken, encodePageToken, pageSize, takePage } from "./pagination.js";
import { checkFuture, checkName, checkUuid, requireUuid, Violations } from "./validate.js";

// A fresh token's prefix collides with an existing one with odds of ~1 in 36^12
// per existing key; a few attempts are more than enough.
const TOKEN_ATTEMPTS = 5;

const keyTarget = (k: Pick<ApiKey, "id" | "name">) => ({ id: k.id, name: k.name, type: "api_key" });

/** Tries fresh tokens until `write` accepts one (null means its prefix was taken). */
async function withFreshToken<T>(write: (token: GeneratedToken) => Promise<T | null>): Promise<{ token: GeneratedToken; written: T }> {
  for (let attempt = 0; attempt < TOKEN_ATTEMPTS; attempt++) {
    const token = generateApiKeyToken();
    const written = await write(token);
    if (written !== null) return { token, written };
  }
  throw new Error(`no free api key prefix after ${TOKEN_ATTEMPTS} attempts`);
}

async function mustFindKey(db: Db, id: string): Promise<ApiKey> {
  const key = await findApiKeyById(db, id);
  if (!key) throw new NotFoundError("api key", id);
  return key;
}

/** The key's tenant, locked for the change (NotFound for an unknown key, FailedPrecondition if archived), then the key itself, locked. */
async function lockKeyForChange(tx: Db, id: string, writer: TenantWriter): Promise<ApiKey> {
  const tenantId = await findApiKeyTenantId(tx, id);
  if (!tenantId) throw new NotFoundError("api key", id);
  await lockTenantForChange(tx, tenantId, writer);
  const key = await lockApiKey(tx, id);
  if (!key) throw new NotFoundError("api key", id);
  return key;
}

/** The calling API key (its id and scopes), or undefined for users, services and bypassed auth: they are not bound by its scopes. */
function callingKey(ctx: HandlerContext): { readonly id: string; readonly scopes: readonly string[] } | undefined {
  const principal = ctx.values.get(principalKey);
  return principal?.kind === "api_key" ? { id: principal.id, scopes: principal.scopes ?? [] } : undefined;
}

/** An API key may rotate or revoke only keys whose scopes it holds (and always revoke itself); checked on the locked key. */
function assertMayManage(ctx: HandlerContext, action: "rotate" | "revoke", target: ApiKey): void {
  const caller = callingKey(ctx);
  if (!caller) return;
  const denial = manageDenial(action, target, scopesNotHeld(target.scopes, caller.scopes), caller.id);
  if (denial) throw new PermissionDeniedError(denial);
}

// PostgreSQL's text form of a timestamptz, as listApiKeysByTenant hands it out.
const PG_TIMESTAMP = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(\.\d{1,6})?[+-](\d\d)(:\d\d){0,2}$/;

/** Whether `text` is a timestamp PostgreSQL reads (the shape alone lets 2026-13-45 25:61:61 through). */
function isPgTimestamp(text: string): boolean {
  const m = PG_TIMESTAMP.exec(text);
  if (!m) return false;
  const [year, month, day, hour, minute, second, offset] = [m[1], m[2], m[3], m[4], m[5], m[6], m[8]].map(Number) as number[];
  const date = new Date(Date.UTC(year!, month! - 1, day!));
  return year! >= 1 && date.getUTCMonth() === month! - 1 && date.getUTCDate() === day && hour! <= 23 && minute! <= 59 && second! <= 59 && offset! <= 15;
}

function decodeCursor(token: string, filters: unknown): ApiKeyCursor | undefined {
  const after = decodePageToken(token, filters);
  if (after === undefined) return undefined;
  const [createdAt, id] = after;
  if (typeof createdAt !== "string" || !isPgTimestamp(createdAt) || typeof id !== "string" || !isUuid(id)) {
    throw InvalidArgumentError.field("page_token", "is not a token this service issued");
  }
  return { createdAt, id };
}

/** The verification entries a key is cached under: its current and its previous prefix. */
function prefixKeys(key: Pick<ApiKey, "prefix" | "previousPrefix">) {
  return key.previousPrefix ? [cacheKey.apiKeyPrefix(key.prefix), cacheKey.apiKeyPrefix(key.previousPrefix)] : [cacheKey.apiKeyPrefix(key.prefix)];
}

/** The answer for a malformed token, an unknown prefix or a wrong secret: nothing else is told. */
const notFound = (): MessageInitShape<typeof VerifyApiKeyResponseSchema> => ({ valid: false, code: verifyCodeToProto("not_found") });

export function createApiKeyHandlers(deps: ServiceDeps, verifyKey: ApiKeyVerifier) {
  const { db, clock } = deps;

  return {
    async createApiKey(req, ctx) {
      // Over REST the key may come as an Idempotency-Key header instead of in the body.
      const idempotencyKey = req.idempotencyKey || (ctx.requestHeader.get("idempotency-key") ?? "");
      const v = new Violations();
      checkUuid(v, "tenant_id", req.tenantId);
      checkName(v, "name", req.name);
      checkUuid(v, "project_id", req.projectId, false);
      const scopes = dedupeScopes(req.scopes);
      if (scopes.length > MAX_SCOPES) v.add("scopes", `may have at most ${MAX_SCOPES} entries`);
      for (const scope of scopes) {
        if (!SCOPE_PATTERN.test(scope)) v.add("scopes", `"${scope.slice(0, 80)}" is not a scope: 1-64 of [a-z0-9_.:-], starting with a letter`);
      }
      const expiresAt = checkFuture(v, "expires_at", req.expiresAt, clock());
      if (idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH) v.add("idempotency_key", `must be at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
      v.throwIfAny();
      // Before anything is written (the idempotency claim included): a key never mints one that outranks it.
      const caller = callingKey(ctx);
      const denial = caller && grantDenial(scopesNotHeld(scopes, caller.scopes));
      if (denial) throw new PermissionDeniedError(denial);

      const tenantId = req.tenantId.toLowerCase();
      const projectId = req.projectId === "" ? null : req.projectId.toLowerCase();
      const name = req.name.trim();
      const id = randomUUID();
      const result = await audited(deps, auditContextOf(ctx), async (tx) => {
        await lockTenantForChange(tx, tenantId, writerOf(ctx));
        if (idempotencyKey !== "") {
          // The fingerprint is of the normalised request, so a retry that only
          // reorders or repeats scopes is still the same request.
          const normalised = create(CreateApiKeyRequestSchema, {
            tenantId,
            name,
            projectId: projectId ?? "",
            scopes: [...scopes].sort(),
            expiresAt: expiresAt ? timestampFromDate(expiresAt) : undefined,
          });
          const claim = await claimIdempotencyKey(tx, {
            scope: createIdempotencyScope(tenantId),
            key: idempotencyKey,
            requestHash: requestFingerprint(CreateApiKeyRequestSchema, normalised),
            resourceId: id,
          });
          if (!claim.claimed) {
            if (!claim.sameRequest) throw new FailedPreconditionError("idempotency_key was already used with a different request");
            // A retry of a create that already happened: the first key's metadata,
            // no second key and no second event. Its secret cannot be returned
            // again: by design only its hash was ever stored, so `secret` is "".
            const existing = await findApiKeyById(tx, claim.resourceId);
            if (!existing) throw new FailedPreconditionError("the api key created with this idempotency_key no longer exists");
            return { result: { key: existing, secret: "", replay: true }, event: null, changed: null };
          }
        }
        const { token, written: key } = await withFreshToken((t) =>
          insertApiKey(tx, { id, tenantId, projectId, name, prefix: t.prefix, secretHash: t.hash, scopes, expiresAt }).catch(
            (error: unknown) => {
              if (error instanceof ForeignKeyIntegrityConstraintViolationError && error.constraint === "api_keys_project_fkey") {
                throw new NotFoundError("project", projectId ?? "");
              }
              throw error;
            },
          ),
        );
        const event: AuditEventDraft = {
          tenantId,
          action: "api_key.create",
          crud: "c",
          target: keyTarget(key),
          // Never the token or its hash.
          fields: {
            name: key.name,
            prefix: key.prefix,
            scopes: key.scopes,
            project_id: key.projectId,
            expires_at: key.expiresAt?.toISOString() ?? null,
          },
        };
        // The prefix and id may be cached as unknown (a guess, or a lookup racing the create).
        const changed = { tenantId, keys: [cacheKey.apiKeyPrefix(key.prefix), cacheKey.apiKeyTenant(key.id)] };
        return { result: { key, secret: token.token, replay: false }, event, changed };
      });
      return { apiKey: apiKeyToProto(result.key), secret: result.secret, idempotentReplay: result.replay };
    },

    async listApiKeys(req) {
      const tenantId = requireUuid("tenant_id", req.tenantId);
      const size = pageSize(req.pageSize);
      const filters = { tenantId, includeRevoked: req.includeRevoked };
      const after = decodeCursor(req.pageToken, filters);
      if (!(await findTenantRef(db, tenantId))) throw new NotFoundError("tenant", tenantId);
      const rows = await listApiKeysByTenant(db, tenantId, { includeRevoked: req.includeRevoked, after, limit: size + 1 });
      const { page, more } = takePage(rows, size);
      const last = page.at(-1);
      return {
        apiKeys: page.map((r) => apiKeyToProto(r.key)),
        nextPageToken: more && last ? encodePageToken([last.cursor.createdAt, last.cursor.id], filters) : "",
      };
    },

    async getApiKey(req) {
      const id = requireUuid("id", req.id);
      return { apiKey: apiKeyToProto(await mustFindKey(db, id)) };
    },

    async revokeApiKey(req, ctx) {
      const id = requireUuid("id", req.id);
      const key = await audited(deps, auditContextOf(ctx), async (tx) => {
        const current = await lockKeyForChange(tx, id, writerOf(ctx));
        assertMayManage(ctx, "revoke", current);
        const revoked = current.revokedAt ? null : await revokeApiKey(tx, id, clock());
        // Revoking a revoked key changes nothing: the key as it is, no event.
        if (!revoked) return { result: current, event: null, changed: null };
        const event: AuditEventDraft = {
          tenantId: revoked.tenantId,
          action: "api_key.revoke",
          crud: "u",
          target: keyTarget(revoked),
          fields: { prefix: revoked.prefix, revoked_at: revoked.revokedAt?.toISOString() ?? null },
        };
        return { result: revoked, event, changed: { tenantId: revoked.tenantId, keys: prefixKeys(current) } };
      });
      return { apiKey: apiKeyToProto(key) };
    },

    async rotateApiKey(req, ctx) {
      const id = requireUuid("id", req.id);
      let graceMs = 0;
      if (req.gracePeriod) {
        graceMs = Number(req.gracePeriod.seconds) * 1000 + Math.trunc(req.gracePeriod.nanos / 1_000_000);
        if (!(graceMs >= 0 && graceMs <= MAX_GRACE_PERIOD_MS) || req.gracePeriod.nanos < 0) {
          throw InvalidArgumentError.field("grace_period", "must be between 0 and 30 days");
        }
      }
      const result = await audited(deps, auditContextOf(ctx), async (tx) => {
        const current = await lockKeyForChange(tx, id, writerOf(ctx));
        assertMayManage(ctx, "rotate", current);
        if (current.revokedAt) throw new FailedPreconditionError(`api key ${id} is revoked and cannot be rotated`);
        const previousExpiresAt = graceMs > 0 ? new Date(clock().getTime() + graceMs) : null;
        const { token, written: key } = await withFreshToken((t) =>
          rotateApiKeySecret(tx, id, { prefix: t.prefix, secretHash: t.hash, previousExpiresAt }),
        );
        const event: AuditEventDraft = {
          tenantId: key.tenantId,
          action: "api_key.rotate",
          crud: "u",
          target: keyTarget(key),
          // previous_prefix: the prefix this rotation replaced (it keeps working
          // until previous_expires_at only when the grace period is > 0).
          fields: { grace_period_seconds: graceMs / 1000, prefix: key.prefix, previous_prefix: current.prefix },
        };
        // The replaced prefixes stop (or keep) working; the new one may be cached as unknown.
        const changed = { tenantId: key.tenantId, keys: [...prefixKeys(current), cacheKey.apiKeyPrefix(key.prefix)] };
        return { result: { key, secret: token.token }, event, changed };
      });
      return { apiKey: apiKeyToProto(result.key), secret: result.secret };
    },

    /**
     * The hottest path. Every outcome about the key is an answer, never an
     * error: a malformed token is NOT_FOUND without touching the database; a
     * well-formed one costs one indexed lookup at most (none when cached), then
     * constant-time hash comparison. A revocation reaches every replica's cache
     * through its change notice; expiry is judged against the clock on every
     * call. Usage is noted in memory and written later, off this path.
     */
    async verifyApiKey(req, ctx) {
      const product = req.product === ProtoProductCode.UNSPECIFIED ? undefined : productFromProto(req.product);
      if (req.product !== ProtoProductCode.UNSPECIFIED && !product) throw InvalidArgumentError.field("product", "is not a known product");
      const result = await verifyKey(req.key, { requiredScopes: req.requiredScopes, product }, ctx.values.get(cacheNoteKey));
      if (result.code === "not_found") return notFound();
      const { key, tenant } = result;
      return {
        valid: result.code === "valid",
        code: verifyCodeToProto(result.code),
        keyId: key.id,
        tenant: tenantToProto(tenant),
        projectId: key.projectId ?? "",
        scopes: [...key.scopes],
        expiresAt: key.expiresAt ? timestampFromDate(key.expiresAt) : undefined,
      };
    },
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}
