import { trace, type TextMapPropagator, type Tracer } from "@opentelemetry/api";

/** With tracing off there is neither a tracer nor a propagator: callers skip every span, so it costs nothing. */
export type Tracing = (
  | { readonly tracer: Tracer; readonly propagator: TextMapPropagator }
  | { readonly tracer: undefined; readonly propagator: undefined }
) & {
  /** Exports what is buffered and stops; safe to call when tracing is off. */
  shutdown(): Promise<void>;
};

/**
 * No endpoint configured: no SDK is even loaded (see tracing-sdk.ts), nor
 * @opentelemetry/core for its W3C propagator: with the semantic conventions it
 * pulls in, that was 37 modules read and compiled on every start, for nothing.
 */
export const TRACING_OFF: Tracing = {
  tracer: undefined,
  propagator: undefined,
  shutdown: async () => {},
};

/** The trace id of the span active in this async context, for log lines. */
export function activeTraceId(): string | undefined {
  return trace.getActiveSpan()?.spanContext().traceId;
}
