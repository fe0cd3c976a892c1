import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { normaliseAddress } from "../auth/client-address.js";
import type { Principal } from "../auth/principal.js";
import type { CacheNote } from "../cache/read-cache.js";
import { ANONYMOUS, type Actor, type AuditContext } from "../domain/audit.js";

/** The TCP peer of the call, for audit source_ip (the same for every protocol). */
export const peerAddressKey = createContextKey<string | undefined>(undefined, { description: "peer address" });

/**
 * The client's address as the authentication interceptor resolved it (the peer,
 * or the first untrusted X-Forwarded-For hop behind a trusted proxy).
 */
export const clientAddressKey = createContextKey<string | undefined>(undefined, { description: "client address" });

/**
 * The REST template the call was matched by (e.g. "/v1/tenants/{id}"), set by
 * the REST layer; undefined for gRPC, gRPC-Web and Connect calls. Tracing uses
 * it as http.route and metrics as the protocol "rest".
 */
export const restRouteKey = createContextKey<string | undefined>(undefined, { description: "REST route template" });

/** The verified caller, for the few checks a handler must make itself (set by the auth interceptor). */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "principal" });

/** Who is calling. Anonymous until an authentication interceptor says otherwise. */
export const actorKey = createContextKey<Actor>(ANONYMOUS, { description: "actor" });

/** Counts committed audit events (set by the observing interceptor). */
export const auditWrittenKey = createContextKey<((count: number) => void) | undefined>(undefined, { description: "audit events written" });
/**
 * Set by whoever wants to know whether the call was answered from the cache
 * (tracing): the cached reads of the call count into it. Unset: nothing counted.
 */
export const cacheNoteKey = createContextKey<CacheNote | undefined>(undefined, { description: "cache note" });

/** The actor and source address every audit event of this call records. */
export function auditContextOf(ctx: HandlerContext): AuditContext {
  const address = ctx.values.get(clientAddressKey) ?? normaliseAddress(ctx.values.get(peerAddressKey));
  return { actor: ctx.values.get(actorKey), sourceIp: address, written: ctx.values.get(auditWrittenKey) };
}
