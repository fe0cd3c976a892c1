import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  WatchChangesResponseSchema,
  type TenantRegistryService,
  type WatchChangesResponse,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { hasPlatformPermission } from "../auth/permissions.js";
import type { ChangeListener } from "../cache/change-listener.js";
import type { ChangeNotice } from "../cache/change-notice.js";
import { InvalidArgumentError } from "../domain/errors.js";
import { isUuid } from "../domain/ids.js";
import { principalKey } from "../transport/context.js";
import type { ServiceDeps } from "./deps.js";

/** What a watch stream needs of the change listener. */
export type ChangeFeed = Pick<ChangeListener, "subscribe" | "onStateChange" | "connected">;

export const WATCH_HEARTBEAT_MS = 15_000;
/** A watcher this far behind is told to flush instead of being sent every change: memory stays bounded. */
const MAX_BACKLOG = 1_000;
/**
 * Open watches of one tenant's principals on one replica, together. Each holds a backlog, and
 * a tenant's principals (an admin can mint API keys without end) could otherwise open tens of
 * thousands within the connection limits and fill them all with changes to their own tenant.
 * Platform principals (the sibling services' caches, one per pod) are not counted here.
 */
export const MAX_WATCHES_PER_TENANT = 64;

const flush = () => create(WatchChangesResponseSchema, { event: { case: "flush", value: {} } });
const paused = () => create(WatchChangesResponseSchema, { event: { case: "paused", value: {} } });
const heartbeat = () => create(WatchChangesResponseSchema, { event: { case: "heartbeat", value: {} } });

/**
 * WatchChanges: the change notices of this replica's listener, pushed to a
 * client cache. A platform principal sees every tenant's changes (or one
 * tenant's, if it asks); a tenant-scoped one only its own tenant's, whatever it
 * asks (the auth interceptor has already refused another tenant's id).
 */
export function createChangeHandlers(
  { shutdownSignal }: Pick<ServiceDeps, "shutdownSignal">,
  feed: ChangeFeed,
  heartbeatMs = WATCH_HEARTBEAT_MS,
): Pick<ServiceImpl<typeof TenantRegistryService>, "watchChanges"> {
  const watchesOf = new Map<string, number>();
  return {
    async *watchChanges(req, ctx: HandlerContext) {
      if (req.tenantId !== "" && !isUuid(req.tenantId)) {
        throw new InvalidArgumentError([{ field: "tenant_id", description: "must be a tenant id (a UUID) or empty" }]);
      }
      // Draining: no new watch here; the client backs off and resubscribes (elsewhere).
      if (shutdownSignal.aborted) throw new ConnectError("the server is draining; watch elsewhere", Code.Unavailable);
      const principal = ctx.values.get(principalKey);
      const everyTenant = principal === undefined || hasPlatformPermission(principal, "tenants:read");
      const scope = req.tenantId !== "" ? req.tenantId.toLowerCase() : everyTenant ? undefined : principal?.tenantId;
      const counted = everyTenant ? undefined : principal?.tenantId;
      if (counted !== undefined) {
        const open = watchesOf.get(counted) ?? 0;
        if (open >= MAX_WATCHES_PER_TENANT) {
          throw new ConnectError(`at most ${MAX_WATCHES_PER_TENANT} open watches per tenant on this replica; close one first`, Code.ResourceExhausted);
        }
        watchesOf.set(counted, open + 1);
      }
      const release = () => {
        if (counted === undefined) return;
        const left = (watchesOf.get(counted) ?? 1) - 1;
        if (left === 0) watchesOf.delete(counted);
        else watchesOf.set(counted, left);
      };

      try {
        // On overflow the backlog collapses into "start over": a flush, or a pause while the feed is down.
        const queue = createBacklog(MAX_BACKLOG, () => (feed.connected ? flush() : paused()));
        // Subscribe before the first message: a change committed in between is queued, never lost.
        const unsubscribe = feed.subscribe((notice: ChangeNotice | undefined) => {
          // An unreadable notice may concern anyone: everyone flushes, which tells nobody anything.
          if (!notice) queue.push(flush());
          else if (scope === undefined || notice.tenantId === scope) {
            queue.push(
              create(WatchChangesResponseSchema, {
                event: { case: "change", value: { tenantId: notice.tenantId, action: notice.action, publishedAt: timestampFromMs(notice.at) } },
              }),
            );
          }
        });
        // While the listener is down, changes go unseen: the client must stop trusting its cache,
        // and flush once the listener is back.
        const unwatch = feed.onStateChange((state) => queue.push(state === "connected" ? flush() : paused()));
        const stop = AbortSignal.any([ctx.signal, shutdownSignal]);
        try {
          yield feed.connected ? flush() : paused();
          while (!stop.aborted) {
            const next = await queue.next(stop, heartbeatMs);
            if (stop.aborted) break;
            yield next ?? heartbeat();
          }
        } finally {
          unsubscribe();
          unwatch();
        }
      } finally {
        release();
      }
      // The caller's deadline is not a clean end: it is told so, as any call past its deadline.
      const reason: unknown = ctx.signal.reason;
      if (!shutdownSignal.aborted && reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) throw reason;
      // Ends with OK on shutdown: the client resubscribes (elsewhere) and flushes.
    },
  };
}

/** A bounded queue: on overflow everything queued is replaced by one `restart` message. */
function createBacklog(max: number, restart: () => WatchChangesResponse) {
  let items: WatchChangesResponse[] = [];
  let wake: (() => void) | undefined;
  return {
    push(item: WatchChangesResponse) {
      if (items.length >= max) items = [restart()];
      else items.push(item);
      wake?.();
    },
    /** The next item, or undefined after `idleMs` with none (or when `signal` aborts). */
    async next(signal: AbortSignal, idleMs: number): Promise<WatchChangesResponse | undefined> {
      if (items.length === 0) {
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            signal.removeEventListener("abort", done);
            wake = undefined;
            resolve();
          };
          const timer = setTimeout(done, idleMs);
          signal.addEventListener("abort", done, { once: true });
          wake = done;
        });
      }
      return items.shift();
    },
  };
}
