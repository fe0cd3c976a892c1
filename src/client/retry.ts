import type { DescMethod, DescMessage, Message } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

export type RetryOptions = {
  /** Retries after the first attempt (default 2; 0 switches retries off). */
  readonly max?: number;
  /** The first backoff's upper bound; each retry doubles it (default 50 ms). */
  readonly baseDelayMs?: number;
  /** No backoff waits longer than this (default 1 s). */
  readonly maxDelayMs?: number;
};

/**
 * Whether repeating this call cannot do anything twice: the proto says the
 * method has no side effects (or is idempotent), or it is a create carrying an
 * idempotency key, which the server replays instead of creating again.
 */
export function isSafeToRetry(method: DescMethod, message: Message): boolean {
  if (method.methodKind !== "unary") return false;
  if (
    method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
    method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT
  ) {
    return true;
  }
  return idempotencyKeyOf(method.input, message) !== "";
}

function idempotencyKeyOf(input: DescMessage, message: Message): string {
  const field = input.fields.find((f) => f.name === "idempotency_key");
  const value = field ? (message as unknown as Record<string, unknown>)[field.localName] : undefined;
  return typeof value === "string" ? value : "";
}

/**
 * Retries Unavailable (the server is restarting, draining, or briefly cut off)
 * with full-jitter exponential backoff, for safe calls only, inside the call's
 * own deadline: a retry never outlives the deadline the caller set.
 */
export function createRetryInterceptor(options: RetryOptions = {}, random: () => number = Math.random): Interceptor {
  const max = options.max ?? 2;
  const base = options.baseDelayMs ?? 50;
  const cap = options.maxDelayMs ?? 1_000;
  return (next) => async (req) => {
    if (max <= 0 || req.stream || !isSafeToRetry(req.method, req.message)) return next(req);
    for (let attempt = 0; ; attempt++) {
      try {
        return await next(req);
      } catch (error) {
        if (attempt >= max || ConnectError.from(error).code !== Code.Unavailable || req.signal.aborted) throw error;
      }
      await sleep(random() * Math.min(cap, base * 2 ** attempt), req.signal);
    }
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(ConnectError.from(signal.reason));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
