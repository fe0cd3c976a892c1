import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import autocannon from "autocannon";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TenantRegistryService } from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { Latencies } from "./stats.js";

const run = promisify(execFile);

/** What one load run measured, from the generator's side. */
export type LoadResult = {
  /** Answers that were a success (2xx; for gRPC, grpc-status 0 where the generator can see it). */
  readonly ok: number;
  readonly failed: number;
  readonly seconds: number;
  readonly latencies: Latencies;
};

export type HttpRequestSpec = {
  readonly method: "GET" | "POST";
  /** Path and query, e.g. "/v1/tenants/by-slug/acme". */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** A body per request instead of `body` (e.g. cycling through many API keys). */
  readonly nextBody?: () => string;
};

/** HTTP/1.1 load from autocannon: `connections` keep-alive connections, one request in flight each. */
export async function http1Load(baseUrl: string, spec: HttpRequestSpec, connections: number, durationMs: number): Promise<LoadResult> {
  const latencies = new Latencies();
  let ok = 0;
  let failed = 0;
  let finish!: (result: autocannon.Result) => void;
  let fail!: (error: unknown) => void;
  const done = new Promise<autocannon.Result>((resolve, reject) => ((finish = resolve), (fail = reject)));
  const instance = autocannon({
    url: baseUrl + spec.path,
    method: spec.method,
    headers: { ...spec.headers },
    ...(spec.body === undefined ? {} : { body: spec.body }),
    ...(spec.nextBody === undefined
      ? {}
      : { requests: [{ method: spec.method, path: spec.path, headers: { ...spec.headers }, setupRequest: (req: autocannon.Request) => ({ ...req, body: spec.nextBody!() }) }] }),
    connections,
    pipelining: 1,
    duration: durationMs / 1000,
    // Bounded: a stalled server cannot hold the bench beyond the cell.
    timeout: 10,
  }, (error, result) => (error ? fail(error) : finish(result)));
  // autocannon's own histogram has 1 ms resolution; time each answer ourselves instead.
  instance.on("response", (...args: unknown[]) => {
    const [, statusCode, , responseTime] = args as [unknown, number, number, number];
    if (statusCode >= 200 && statusCode < 300) {
      ok++;
      latencies.record(responseTime);
    } else failed++;
  });
  const result = await done;
  return { ok, failed: failed + result.errors, seconds: result.duration, latencies };
}

/** One gRPC call as bytes on the wire: the 5-byte frame header and the encoded request. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

export type GrpcLoadSpec = {
  /** "/package.Service/Method" */
  readonly path: string;
  /** The encoded request message (no frame). */
  readonly request: Uint8Array;
  /** The same call through a connect-node client, for the generator used without h2load. */
  readonly call: (client: Client<typeof TenantRegistryService>) => Promise<unknown>;
};

/**
 * gRPC over h2c with `inFlight` calls outstanding on one HTTP/2 connection (a sibling's
 * channel): h2load when `useH2load`, otherwise a connect-node client keeping them in flight.
 * h2load cannot see trailers, so its answers count as ok on HTTP 200; the caller checks
 * one call with a real client first.
 */
export async function grpcLoad(baseUrl: string, spec: GrpcLoadSpec, inFlight: number, durationMs: number, useH2load: boolean): Promise<LoadResult> {
  return useH2load ? h2loadRun(baseUrl, spec, inFlight, durationMs) : connectGrpcRun(baseUrl, spec, inFlight, durationMs);
}

async function h2loadRun(baseUrl: string, spec: GrpcLoadSpec, inFlight: number, durationMs: number): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), "tenant-registry-h2load-"));
  try {
    const data = join(dir, "request.bin");
    const log = join(dir, "requests.tsv");
    await writeFile(data, grpcFrame(spec.request));
    const seconds = Math.max(1, Math.round(durationMs / 1000));
    const started = performance.now();
    await run(
      "h2load",
      ["-c", "1", "-m", String(inFlight), "-D", String(seconds), "-d", data,
       "-H", "content-type: application/grpc", "-H", "te: trailers", `--log-file=${log}`, baseUrl + spec.path],
      { timeout: durationMs + 30_000, maxBuffer: 1 << 20 },
    );
    const elapsed = (performance.now() - started) / 1000;
    const latencies = new Latencies();
    let ok = 0;
    let failed = 0;
    for (const line of (await readFile(log, "utf8")).split("\n")) {
      const [, status, micros] = line.split("\t");
      if (status === undefined || micros === undefined) continue;
      if (status === "200") {
        ok++;
        latencies.record(Number(micros) / 1000);
      } else failed++;
    }
    return { ok, failed, seconds: Math.min(elapsed, seconds), latencies };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function connectGrpcRun(baseUrl: string, spec: GrpcLoadSpec, inFlight: number, durationMs: number): Promise<LoadResult> {
  const client = createClient(TenantRegistryService, createGrpcTransport({ baseUrl }));
  const latencies = new Latencies();
  let ok = 0;
  let failed = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const worker = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await spec.call(client);
        ok++;
        latencies.record(performance.now() - t0);
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return { ok, failed, seconds: (performance.now() - started) / 1000, latencies };
}

/** Sequential calls of `fn` for at most `count` calls or `maxMs`, whichever comes first. */
export async function sequential(fn: () => Promise<unknown>, count: number, maxMs: number): Promise<Latencies> {
  const latencies = new Latencies();
  const deadline = performance.now() + maxMs;
  for (let i = 0; i < count && performance.now() < deadline; i++) {
    const t0 = performance.now();
    await fn();
    latencies.record(performance.now() - t0);
  }
  return latencies;
}

/** HTTP/1.1 load running in the background until `stop()` (or `maxMs`, whichever is first). */
export function backgroundHttp1Load(baseUrl: string, spec: HttpRequestSpec, connections: number, maxMs: number): { stop(): Promise<{ ok: number; failed: number; seconds: number }> } {
  let ok = 0;
  let failed = 0;
  let stopper = () => {};
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: baseUrl + spec.path,
        method: spec.method,
        headers: { ...spec.headers },
        ...(spec.body === undefined ? {} : { body: spec.body }),
        connections,
        duration: maxMs / 1000,
        timeout: 10,
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    instance.on("response", (...args: unknown[]) => {
      const statusCode = args[1] as number;
      if (statusCode >= 200 && statusCode < 300) ok++;
      else failed++;
    });
    stopper = () => instance.stop();
  });
  // Surfaced by stop(); never an unhandled rejection in between.
  done.catch(() => {});
  return {
    async stop() {
      stopper();
      const result = await done;
      return { ok, failed: failed + result.errors, seconds: result.duration };
    },
  };
}
