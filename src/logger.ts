import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger };

/**
 * Structured JSON logs on stdout. Credentials are redacted by path as a second
 * line of defence; the first is never putting them into a log call at all.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "tenant-registry" },
      redact: {
        paths: ["authorization", "*.authorization", "headers.authorization", "secret", "*.secret", "key", "*.key", "token", "*.token"],
        censor: "[redacted]",
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
