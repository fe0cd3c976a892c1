import net from "node:net";

export type TcpProxy = {
  readonly port: number;
  /** Cuts every connection and refuses new ones: the database "goes down". */
  cut(): Promise<void>;
  /**
   * From now on forwards nothing either way and closes nothing, on every
   * connection, open or new: a peer behind a dead NAT entry or a vanished host.
   */
  silence(): void;
  /** Accepts connections again, on the same port, after a cut. */
  restore(): Promise<void>;
};

/** A loopback TCP proxy in front of a real server, so a test can take it away. */
export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let silent = false;
  // What each side sends is dropped instead of forwarded (and read, so neither side is held up by a full buffer).
  const mute = (s: net.Socket) => {
    s.unpipe();
    s.on("data", () => {});
  };
  const accept = (client: net.Socket) => {
    const upstream = net.connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => s.destroy());
    }
    if (silent) for (const s of [client, upstream]) mute(s);
    else client.pipe(upstream).pipe(client);
  };
  const listen = async (port: number) => {
    const server = net.createServer(accept);
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    return server;
  };
  let server = await listen(0);
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    async cut() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
    silence() {
      silent = true;
      for (const s of sockets) mute(s);
    },
    async restore() {
      server = await listen(port);
    },
  };
}
