import type net from "node:net";
import { normaliseAddress } from "../auth/client-address.js";
import type { Logger } from "../logger.js";

export type ConnectionLimits = {
  /** Open connections the port holds at once, all clients together. */
  readonly maxConnections: number;
  /** Open connections one client address may hold at once. */
  readonly maxConnectionsPerAddress: number;
  /** An address caught abusing HTTP/2 (rapid reset, invalid frames) is refused for this long. */
  readonly abuseCooldownMs: number;
};

export type RefusalReason = "server at its connection limit" | "address at its connection limit" | "address cooling down after abuse";

export type ConnectionGate = {
  /** Counts the socket until it closes, or refuses it (false: the caller destroys it). */
  admit(socket: net.Socket): boolean;
  /** Refuses new connections from the address for the cooldown. */
  penalise(address: string | undefined, why: string): void;
  readonly open: number;
};

// At most one refusal line per window: a flood of refused connections must not
// become a flood of log lines.
const REFUSAL_LOG_WINDOW_MS = 10_000;

/**
 * Caps on open connections, overall and per client address, checked when a
 * connection is accepted and before a byte of it is read. The per-address cap
 * is what keeps one client from filling the overall cap and locking out
 * everyone else.
 */
export function createConnectionGate(limits: ConnectionLimits, logger: Logger, now: () => number = Date.now): ConnectionGate {
  const perAddress = new Map<string, number>();
  const coolingDown = new Map<string, number>();
  let open = 0;
  let refused = new Map<RefusalReason, number>();
  let windowStarted = -Infinity;

  const noteRefusal = (reason: RefusalReason, address: string) => {
    refused.set(reason, (refused.get(reason) ?? 0) + 1);
    const t = now();
    if (t - windowStarted < REFUSAL_LOG_WINDOW_MS) return;
    windowStarted = t;
    logger.warn(
      { refused: Object.fromEntries(refused), lastAddress: address, open, limits: { maxConnections: limits.maxConnections, maxConnectionsPerAddress: limits.maxConnectionsPerAddress } },
      "refusing connections: limit reached",
    );
    refused = new Map();
  };

  return {
    get open() {
      return open;
    },
    admit(socket) {
      const address = normaliseAddress(socket.remoteAddress) ?? "unknown";
      const until = coolingDown.get(address);
      if (until !== undefined && until <= now()) coolingDown.delete(address);
      const reason: RefusalReason | undefined =
        until !== undefined && until > now() ? "address cooling down after abuse"
        : open >= limits.maxConnections ? "server at its connection limit"
        : (perAddress.get(address) ?? 0) >= limits.maxConnectionsPerAddress ? "address at its connection limit"
        : undefined;
      if (reason) {
        noteRefusal(reason, address);
        return false;
      }
      open += 1;
      perAddress.set(address, (perAddress.get(address) ?? 0) + 1);
      socket.once("close", () => {
        open -= 1;
        const left = (perAddress.get(address) ?? 1) - 1;
        if (left === 0) perAddress.delete(address);
        else perAddress.set(address, left);
      });
      return true;
    },
    penalise(raw, why) {
      if (limits.abuseCooldownMs <= 0) return;
      const address = normaliseAddress(raw) ?? "unknown";
      if (coolingDown.size >= 10_000) {
        for (const [a, until] of coolingDown) if (until <= now()) coolingDown.delete(a);
      }
      coolingDown.set(address, now() + limits.abuseCooldownMs);
      logger.warn({ address, why, cooldownMs: limits.abuseCooldownMs }, "refusing connections from an abusive address for a while");
    },
  };
}
