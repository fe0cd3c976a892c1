import { pino, type Logger, type DestinationStream } from "pino";
import { activeTraceId } from "./observability/tracing.js";

export type { Logger };

/**
 * Structured JSON logs on stdout. Credentials are redacted by path as a second
 * line of defence; the first is never putting them into a log call at all
 * (Node's client-error objects carry the raw request as err.rawPacket).
 */
export function createLogger(level: string, destination?: DestinationStream, options: { traceIds?: boolean } = {}): Logger {
  return pino(
    {
      level,
      // With tracing on, every line logged inside a call carries its trace id.
      ...(options.traceIds ? { mixin: () => { const traceId = activeTraceId(); return traceId ? { traceId } : {}; } } : {}),
      base: { service: "tenant-registry" },
      redact: {
        paths: ["err.rawPacket", "authorization", "*.authorization", "headers.authorization", "secret", "*.secret", "key", "*.key", "token", "*.token"],
        censor: "[redacted]",
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
