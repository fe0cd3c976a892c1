import { webcrypto } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata polyfill first.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as never);
const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

type Issued = { readonly cert: string; readonly key: string };

export type TestPki = {
  readonly dir: string;
  /** PEM file paths. */
  readonly files: { caCert: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string; otherCert: string; otherKey: string };
  /** PEM contents, for clients. */
  readonly ca: string;
  readonly client: Issued;
  /** A client certificate from a CA the server does not trust. */
  readonly other: Issued;
  remove(): Promise<void>;
};

async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]) as Promise<webcrypto.CryptoKeyPair>;
}

async function pemKey(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

async function selfSignedCa(name: string) {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys,
    signingAlgorithm: ALGORITHM,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return { cert, keys };
}

async function issue(ca: Awaited<ReturnType<typeof selfSignedCa>>, subject: string, usage: string, names: x509.JsonGeneralName[] = []): Promise<Issued> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${subject}`,
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ALGORITHM,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([usage]),
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
    ],
  });
  return { cert: cert.toString("pem"), key: await pemKey(keys.privateKey) };
}

/** A CA, a server certificate for 127.0.0.1/localhost and client certificates, made fresh for a test. */
export async function createTestPki(): Promise<TestPki> {
  const ca = await selfSignedCa("tenant-registry test CA");
  const strangerCa = await selfSignedCa("someone else's CA");
  const server = await issue(ca, "tenant-registry", x509.ExtendedKeyUsage.serverAuth, [
    { type: "ip", value: "127.0.0.1" },
    { type: "dns", value: "localhost" },
  ]);
  const client = await issue(ca, "certifai-api", x509.ExtendedKeyUsage.clientAuth);
  const other = await issue(strangerCa, "intruder", x509.ExtendedKeyUsage.clientAuth);
  const dir = await mkdtemp(join(tmpdir(), "pki-"));
  const files = {
    caCert: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server-key.pem"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client-key.pem"),
    otherCert: join(dir, "other.pem"),
    otherKey: join(dir, "other-key.pem"),
  };
  const caPem = ca.cert.toString("pem");
  await Promise.all([
    writeFile(files.caCert, caPem),
    writeFile(files.serverCert, server.cert),
    writeFile(files.serverKey, server.key),
    writeFile(files.clientCert, client.cert),
    writeFile(files.clientKey, client.key),
    writeFile(files.otherCert, other.cert),
    writeFile(files.otherKey, other.key),
  ]);
  return { dir, files, ca: caPem, client, other, remove: () => rm(dir, { recursive: true, force: true }) };
}
