import { pino, type Logger, type DestinationStream } from "pino";
import { activeTraceId } from "./observability/tracing.js";

export type { Logger };

/**
 * Structured JSON logs on stdout. Credentials are redacted by path as a second
 * line of defence; the first is never putting them into a log call at all
 * (Node's client-error objects carry the raw request as err.rawPacket).
 */
export function createLogger(level: string, destination?: DestinationStream, options: { traceIds?: boolean } = {}): Logger {
  // A destination that writes in blocks is flushed by every warning and error:
  // the lines that explain a crash must not wait in a buffer the crash loses.
  const flushSync = (destination as Partial<StdoutDestination> | undefined)?.flushSync?.bind(destination);
  return pino(
    {
      level,
      ...(flushSync
        ? {
            hooks: {
              logMethod(args, method, lineLevel) {
                method.apply(this, args);
                if (lineLevel >= WARN) flushSync();
              },
            },
          }
        : {}),
      // With tracing on, every line logged inside a call carries its trace id.
      ...(options.traceIds ? { mixin: () => { const traceId = activeTraceId(); return traceId ? { traceId } : {}; } } : {}),
      base: { service: "tenant-registry" },
      serializers: { err: errorFields },
      redact: {
        paths: ["err.rawPacket", "authorization", "*.authorization", "headers.authorization", "secret", "*.secret", "key", "*.key", "token", "*.token"],
        censor: "[redacted]",
      },
      timestamp: isoTimeByMillisecond(),
    },
    destination,
  );
}

const WARN = 40;

// pg's error fields that say which value failed or which constraint: what an operator needs.
const KEPT_FIELDS = ["code", "severity", "constraint", "table", "column", "errno", "syscall"] as const;
const FRAME = /^\s+at (?:async )?([\w$.<>]+) \(/;

/**
 * An error as a log field: its type, message, code and cause, and the names of
 * the functions it came through, but no stack (paths of this installation), and
 * none of what drivers hang on errors (pg's `where`, `internalQuery`, `file`,
 * `routine`; a Slonik error's SQL and values; Node's raw packets): the log
 * carries no SQL, no path and nothing a caller sent beyond what a message quotes.
 */
export function errorFields(error: unknown, depth = 0): unknown {
  if (!(error instanceof Error)) return typeof error === "object" && error !== null ? { type: "non-error object" } : error;
  const fields: Record<string, unknown> = { type: error.constructor?.name ?? error.name, message: error.message };
  const record = error as unknown as Record<string, unknown>;
  for (const key of KEPT_FIELDS) {
    const value = record[key];
    if (typeof value === "string" || typeof value === "number") fields[key] = value;
  }
  const frames = (error.stack ?? "").split("\n").flatMap((line) => FRAME.exec(line)?.[1] ?? []).slice(0, 8);
  if (frames.length > 0) fields["frames"] = frames.join(" < ");
  if (error.cause !== undefined && depth < 3) fields["cause"] = errorFields(error.cause, depth + 1);
  if (error instanceof AggregateError && depth < 3) fields["errors"] = error.errors.slice(0, 5).map((e: unknown) => errorFields(e, depth + 1));
  return fields;
}

/**
 * pino's isoTime, formatted once per millisecond: every call writes an access
 * line, and formatting a Date for each was ~2 % of a cached hot read's server
 * CPU (4 µs at c=1, node --cpu-prof); at hot-path rates lines share their
 * millisecond.
 */
function isoTimeByMillisecond(): () => string {
  let at = Number.NaN;
  let field = "";
  return () => {
    const now = Date.now();
    if (now !== at) {
      at = now;
      field = `,"time":"${new Date(now).toISOString()}"`;
    }
    return field;
  };
}

export type StdoutDestination = DestinationStream & { flushSync(): void };

/**
 * The service's stdout, written in blocks: an info line waits until 4 KiB are
 * buffered or 100 ms have passed; a warning or an error is written at once,
 * with everything before it; what is left goes out as the process exits. One
 * write(2) per line, pino's default, was ~10 % of a hot call's server CPU under
 * load (profiled: 7.8-8.2k against 8.8k uncached calls/s with blocks). What a
 * death without an exit event (SIGKILL, a V8 out-of-memory abort) can lose is
 * the last 100 ms or 4 KiB of info lines: access lines, not explanations.
 */
export function createStdoutDestination(): StdoutDestination {
  const stdout = pino.destination({ dest: 1, sync: true, minLength: 4096, periodicFlush: 100 });
  // pino stops writing on EPIPE; any other write error would otherwise throw from the flush timer.
  let failed = false;
  stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (failed) return;
    failed = true;
    process.stderr.write(`tenant-registry: writing the log to stdout failed (${error.code ?? error.message})\n`);
  });
  process.on("exit", () => {
    try {
      stdout.flushSync();
    } catch {
      // stdout is gone: there is nowhere left to write to.
    }
  });
  return stdout;
}
