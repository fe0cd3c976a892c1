import { readFile } from "node:fs/promises";
import tls from "node:tls";
import type { TlsConfig } from "../config.js";

export type TlsTermination = {
  /** An un-listened TLS server: raw sockets go in through emit("connection"), secured ones come out. */
  readonly server: tls.Server;
  /** Whether callers must present a certificate signed by TLS_CLIENT_CA_FILE. */
  readonly mutual: boolean;
};

/**
 * TLS on the serving port, when TLS_CERT_FILE/TLS_KEY_FILE are set: ALPN offers
 * h2 (gRPC, Connect, gRPC-Web) and http/1.1 (REST, Connect, probes); with
 * TLS_CLIENT_CA_FILE every caller must present a certificate that CA signed.
 * Unset, the port stays plaintext h2c for meshes that terminate TLS themselves.
 */
export async function createTlsTermination(config: TlsConfig, handshakeTimeoutMs: number): Promise<TlsTermination> {
  const [cert, key, ca] = await Promise.all([
    readPem(config.certFile, "TLS_CERT_FILE"),
    readPem(config.keyFile, "TLS_KEY_FILE"),
    config.clientCaFile === undefined ? undefined : readPem(config.clientCaFile, "TLS_CLIENT_CA_FILE"),
  ]);
  const mutual = ca !== undefined;
  let server: tls.Server;
  try {
    server = tls.createServer({
      cert,
      key,
      ...(mutual ? { ca, requestCert: true, rejectUnauthorized: true } : {}),
      ALPNProtocols: ["h2", "http/1.1"],
      minVersion: "TLSv1.2",
      handshakeTimeout: handshakeTimeoutMs,
    });
  } catch (error) {
    // A key that does not match the certificate, or PEM that is not a key.
    throw new TlsConfigError(`TLS_CERT_FILE/TLS_KEY_FILE: not a certificate and its private key (${(error as Error).message})`);
  }
  return { server, mutual };
}

export class TlsConfigError extends Error {
  override readonly name = "StartupError";
}

async function readPem(path: string, variable: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    // The variable names the file; its path stays out of the message like every other path.
    throw new TlsConfigError(`${variable}: cannot read the file (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
}
