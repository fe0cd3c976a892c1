import { trace, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

export type Tracing = {
  /** Undefined when tracing is off: callers skip every span, so it costs nothing. */
  readonly tracer: Tracer | undefined;
  readonly propagator: W3CTraceContextPropagator;
  /** Exports what is buffered and stops; safe to call when tracing is off. */
  shutdown(): Promise<void>;
};

/** No endpoint configured: no SDK is even loaded (see tracing-sdk.ts). */
export const TRACING_OFF: Tracing = {
  tracer: undefined,
  propagator: new W3CTraceContextPropagator(),
  shutdown: async () => {},
};

/** The trace id of the span active in this async context, for log lines. */
export function activeTraceId(): string | undefined {
  return trace.getActiveSpan()?.spanContext().traceId;
}
