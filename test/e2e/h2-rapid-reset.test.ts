import http2 from "node:http2";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { DEFAULT_LIMITS } from "../../src/transport/server.js";
import { insertTenant } from "../support/fixtures.js";
import { useTestServer } from "../support/harness.js";
import { clientFor, type TestServer } from "../support/server.js";

// Rapid reset (CVE-2023-44487) against the real listener: raw node:http2 client
// sessions open streams and cancel them at once. Our guard (src/transport/h2-guard.ts)
// must end such a session with GOAWAY(ENHANCE_YOUR_CALM) after about resetBurst
// resets — far sooner than nghttp2's own built-in limit (1000, and INTERNAL_ERROR),
// which is what would end it if our guard never fired — and the address then cools
// down. Attackers connect from 127.0.0.x (x ≥ 10), the well-behaved client from 127.0.0.1.
const LIMITS = { ...DEFAULT_LIMITS, resetBurst: 50, resetRatePerSec: 10, abuseCooldownMs: 30_000 };
const GET_TENANT = "/breakpilot.tenantregistry.v1.TenantRegistryService/GetTenant";
// Past this many resets on one session the attacker gives up: the guard did not fire.
const ATTACKER_MAX = 3_000;

let server: TestServer;
let tenantId: string;
useTestServer(
  async (h) => {
    server = h.server;
    tenantId = (await insertTenant(h.sql)).id;
  },
  { limits: LIMITS },
);

type Attack = { sent: number; goawayCode: number | undefined; connected: boolean };

/** One attacker connection from `localAddress`: HEADERS + RST_STREAM(CANCEL) until the server ends it. */
function attackFrom(localAddress: string): Promise<Attack> {
  return new Promise((resolve) => {
    const session = http2.connect(server.baseUrl, {
      createConnection: () => net.connect({ host: "127.0.0.1", port: server.port, localAddress }),
    });
    session.on("error", () => {});
    const result: Attack = { sent: 0, goawayCode: undefined, connected: false };
    session.once("goaway", (code: number) => (result.goawayCode = code));
    session.once("close", () => resolve(result));
    session.once("remoteSettings", async () => {
      result.connected = true;
      while (result.sent < ATTACKER_MAX && result.goawayCode === undefined && !session.closed && !session.destroyed) {
        try {
          const stream = session.request({ ":method": "POST", ":path": GET_TENANT, "content-type": "application/grpc", te: "trailers" });
          stream.on("error", () => {});
          stream.close(http2.constants.NGHTTP2_CANCEL);
          result.sent += 1;
        } catch {
          break;
        }
        // Yield now and then so that the frames go out and the GOAWAY can come in.
        if (result.sent % 10 === 0) await new Promise((r) => setImmediate(r));
      }
      session.destroy();
    });
  });
}

function p50(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe("HTTP/2 rapid reset", () => {
  it("the abusive session gets GOAWAY(ENHANCE_YOUR_CALM) within a bounded number of resets, and its address cools down", async () => {
    const attack = await attackFrom("127.0.0.10");
    expect(attack.connected).toBe(true);
    expect(attack.goawayCode).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    // The client may have queued a few more before the GOAWAY reached it; the server's count is exact.
    expect(attack.sent).toBeLessThan(ATTACKER_MAX);
    const lines = server.logs.filter((l) => l["msg"] === "closing an abusive http2 session");
    expect(lines).toHaveLength(1);
    const resets = lines[0]!["resets"] as number;
    console.log(`rapid reset: GOAWAY after ${resets} resets counted by the server (${attack.sent} sent by the client)`);
    // The burst, plus what the refill allows while the attack lasts.
    expect(resets).toBeGreaterThan(LIMITS.resetBurst);
    expect(resets).toBeLessThanOrEqual(LIMITS.resetBurst + 20);
    // The same address is now refused at once; another address is not.
    expect((await attackFrom("127.0.0.10")).connected).toBe(false);
    expect(server.logs.some((l) => l["msg"] === "refusing connections from an abusive address for a while" && l["address"] === "127.0.0.10")).toBe(true);
  });

  it("a well-behaved client on another connection keeps its latency during the attack", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const call = async () => {
      const t = performance.now();
      expect((await client.getTenant({ id: tenantId })).tenant?.id).toBe(tenantId);
      return performance.now() - t;
    };
    for (let i = 0; i < 10; i++) await call(); // warm: connection, cache, JIT
    const before: number[] = [];
    for (let i = 0; i < 40; i++) before.push(await call());

    // Attackers on fresh addresses, one after another, each until the server ends it,
    // for as long as the good client measures (like the reconnecting attack in issue #8).
    let measuring = true;
    const attacks: Attack[] = [];
    const attacking = (async () => {
      for (let x = 20; measuring && x < 250; x++) attacks.push(await attackFrom(`127.0.0.${x}`));
    })();
    const during: number[] = [];
    for (let i = 0; i < 40; i++) during.push(await call());
    measuring = false;
    await attacking;

    const ratio = p50(during) / p50(before);
    console.log(
      `rapid reset: well-behaved p50 ${p50(before).toFixed(2)} ms before, ${p50(during).toFixed(2)} ms during ${attacks.length} attacking sessions (ratio ${ratio.toFixed(2)})`,
    );
    expect(attacks.length).toBeGreaterThan(0);
    for (const a of attacks) expect(a.goawayCode).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    // Generous on purpose: the attackers run in this process, on the good client's
    // event loop, so their own work lands in its latency too, and the machine is
    // shared (measured 5–6× here, from p50s of a few ms). What guards the fix is the
    // GOAWAY code above; this only catches an attack that starves other connections.
    expect(ratio).toBeLessThan(20);
  }, 60_000);
});
