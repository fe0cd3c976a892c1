import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

describe("traces and metrics are configured by the standard variables only", () => {
  it("is off without an OTLP endpoint, with the platform's service name", () => {
    expect(loadConfig({}).tracing).toEqual({
      endpoint: undefined,
      protocol: "http/protobuf",
      headers: {},
      serviceName: "tenant-registry",
      resourceAttributes: {},
      sampler: { name: "parentbased_always_on", ratio: 1 },
    });
    expect(loadConfig({}).metricsListen).toBeUndefined();
  });

  it("sends to <OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces, or to the traces endpoint exactly as given", () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }).tracing.endpoint).toBe("http://collector:4318/v1/traces");
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://signoz:4318/custom" }).tracing
        .endpoint,
    ).toBe("https://signoz:4318/custom");
  });

  it("honours OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none over an endpoint", () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" };
    expect(loadConfig({ ...endpoint, OTEL_SDK_DISABLED: "true" }).tracing.endpoint).toBeUndefined();
    expect(loadConfig({ ...endpoint, OTEL_TRACES_EXPORTER: "none" }).tracing.endpoint).toBeUndefined();
  });

  it("takes http/json or http/protobuf, the traces-specific protocol winning, and refuses grpc by name", () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" }).tracing.protocol).toBe("http/json");
    expect(loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: "http/json", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/protobuf" }).tracing.protocol).toBe(
      "http/protobuf",
    );
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL: expected http\/protobuf or http\/json/);
  });

  it("decodes OTEL_RESOURCE_ATTRIBUTES; OTEL_SERVICE_NAME wins over its service.name", () => {
    const t = loadConfig({ OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod, k8s.pod.name=reg%2D1,service.name=from-attrs" }).tracing;
    expect(t.resourceAttributes).toEqual({ "deployment.environment": "prod", "k8s.pod.name": "reg-1", "service.name": "from-attrs" });
    expect(t.serviceName).toBe("from-attrs");
    expect(loadConfig({ OTEL_RESOURCE_ATTRIBUTES: "service.name=a", OTEL_SERVICE_NAME: "b" }).tracing.serviceName).toBe("b");
    expect(() => loadConfig({ OTEL_RESOURCE_ATTRIBUTES: "novalue" })).toThrow(/OTEL_RESOURCE_ATTRIBUTES: expected key=value pairs/);
  });

  it("sends the OTLP headers (the traces-specific ones winning) and never echoes a malformed one", () => {
    const t = loadConfig({ OTEL_EXPORTER_OTLP_HEADERS: "signoz-ingestion-key=s3cr%3Dt,x-a=1", OTEL_EXPORTER_OTLP_TRACES_HEADERS: "x-a=2" }).tracing;
    expect(t.headers).toEqual({ "signoz-ingestion-key": "s3cr=t", "x-a": "2" });
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_HEADERS: "authorization Bearer-topsecret" })).toThrow(/OTEL_EXPORTER_OTLP_HEADERS: expected key=value/);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_HEADERS: "authorization Bearer-topsecret" })).not.toThrow(/topsecret/);
  });

  it("parses the sampler and its ratio", () => {
    expect(loadConfig({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" }).tracing.sampler).toEqual({
      name: "parentbased_traceidratio",
      ratio: 0.25,
    });
    expect(() => loadConfig({ OTEL_TRACES_SAMPLER: "sometimes" })).toThrow(ConfigError);
    expect(() => loadConfig({ OTEL_TRACES_SAMPLER_ARG: "2" })).toThrow(/OTEL_TRACES_SAMPLER_ARG/);
  });

  it("serves /metrics on METRICS_ADDR as well when it is set, naming the variable when it is malformed", () => {
    expect(loadConfig({ METRICS_ADDR: ":9464" }).metricsListen).toEqual({ host: undefined, port: 9464 });
    expect(() => loadConfig({ METRICS_ADDR: "9464" })).toThrow(/METRICS_ADDR: expected host:port/);
  });
});
