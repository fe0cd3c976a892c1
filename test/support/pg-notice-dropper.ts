import net from "node:net";

export type NoticeDropper = {
  /** A URL like `databaseUrl`, through the proxy. */
  readonly url: string;
  /** While true, NotificationResponse messages from the server are dropped; everything else passes. */
  dropping: boolean;
  close(): Promise<void>;
};

const NOTIFICATION_RESPONSE = 0x41; // 'A'

/**
 * A proxy in front of PostgreSQL that can swallow the notices it delivers while
 * passing every query and answer, as a pooler in transaction mode does with the
 * notices of a session it has handed back: LISTEN is accepted, queries work, and
 * nothing ever arrives. It reads the server's messages (type byte, int32 length),
 * so it needs a connection without TLS.
 */
export async function startNoticeDropper(databaseUrl: string, dropping: boolean): Promise<NoticeDropper> {
  const target = new URL(databaseUrl);
  const sockets = new Set<net.Socket>();
  const self = { dropping } as { dropping: boolean };
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    let pending: Buffer = Buffer.alloc(0);
    upstream.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      const pass: Buffer[] = [];
      while (pending.length >= 5) {
        const size = 1 + pending.readUInt32BE(1);
        if (pending.length < size) break;
        if (!(self.dropping && pending[0] === NOTIFICATION_RESPONSE)) pass.push(pending.subarray(0, size));
        pending = pending.subarray(size);
      }
      if (pass.length > 0) client.write(Buffer.concat(pass));
    });
    upstream.on("end", () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = new URL(databaseUrl);
  url.hostname = "127.0.0.1";
  url.port = String((server.address() as net.AddressInfo).port);
  return Object.assign(self, {
    url: url.toString(),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  });
}
