import { context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
} from "@opentelemetry/sdk-trace";
import type { TracingConfig } from "../config.js";
import { TRACING_OFF, type Tracing } from "./tracing.js";

// This module must not import pg (directly or through the app): the pg
// instrumentation can only wrap the driver if it is enabled before pg is loaded.

function samplerFor({ name, ratio }: TracingConfig["sampler"]): Sampler {
  switch (name) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}

/**
 * Starts tracing when an OTLP endpoint is configured. Call it before the app's
 * modules are imported (main.ts does: it loads the server afterwards), so the
 * pg instrumentation hooks the driver as it loads. The OpenTelemetry context
 * manager is process-wide by design; everything else stays in the returned object.
 */
export function startTracing(config: TracingConfig): Tracing {
  if (config.endpoint === undefined) return TRACING_OFF;
  const options = { url: config.endpoint, headers: { ...config.headers } };
  const exporter = config.protocol === "http/json" ? new JsonExporter(options) : new ProtobufExporter(options);
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ ...config.resourceAttributes, "service.name": config.serviceName }),
    sampler: samplerFor(config.sampler),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const pg = new PgInstrumentation({
    // Statements as written (placeholders, no values); only inside a call's span,
    // so readiness probes and background jobs do not each start a trace.
    enhancedDatabaseReporting: false,
    requireParentSpan: true,
  });
  pg.setTracerProvider(provider);
  pg.enable();
  return {
    tracer: provider.getTracer("tenant-registry"),
    propagator: new W3CTraceContextPropagator(),
    async shutdown() {
      pg.disable();
      await provider.shutdown(); // flushes the batch first
      context.disable();
    },
  };
}
