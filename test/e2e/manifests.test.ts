import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { CONFIG_VARIABLES, loadConfig } from "../../src/config.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { startCliServer } from "../support/cli-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

// The manifests must agree with the code: these tests read deploy/base and the
// Dockerfile and hold them against the config schema and the built CLI itself.
const BASE = join(PACKAGE_ROOT, "deploy", "base");
const MAIN = join(PACKAGE_ROOT, "dist", "bin", "main.js");
const execFileP = promisify(execFile);

type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };
type Probe = { httpGet: { path: string; port: string | number }; periodSeconds?: number; failureThreshold?: number };
type Container = {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: EnvVar[];
  ports?: { name: string; containerPort: number }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  resources?: { requests?: { cpu?: string; memory?: string }; limits?: { memory?: string } };
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
};
type PodSpec = {
  terminationGracePeriodSeconds: number;
  securityContext: { runAsNonRoot: boolean; runAsUser: number; runAsGroup: number };
  initContainers: Container[];
  containers: Container[];
  volumes: { name: string; secret?: { secretName: string; items?: { key: string; path: string }[] } }[];
};
type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; spec: Record<string, unknown> };

let manifests: Manifest[];
let kustomization: { resources: string[] };
let pod: PodSpec;
let init: Container;
let server: Container;

const of = <T>(kind: string) => {
  const found = manifests.filter((m) => m.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0]! as unknown as T;
};
/** A container's plain env, with secrets replaced by what a test supplies. */
function envOf(container: Container, secrets: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    (container.env ?? []).map((e) => {
      if (e.value !== undefined) return [e.name, e.value];
      const ref = e.valueFrom?.secretKeyRef;
      if (!ref || secrets[ref.key] === undefined) throw new Error(`${container.name}: ${e.name} has no value the test can supply`);
      return [e.name, secrets[ref.key]!];
    }),
  );
}

beforeAll(async () => {
  const files = (await readdir(BASE)).filter((f) => f.endsWith(".yaml"));
  manifests = [];
  for (const file of files) {
    const text = await readFile(join(BASE, file), "utf8");
    for (const doc of parseAllDocuments(text)) {
      expect(doc.errors, file).toEqual([]);
      const value = doc.toJS() as Manifest & { resources?: string[] };
      if (file === "kustomization.yaml") kustomization = value as unknown as { resources: string[] };
      else manifests.push(value);
    }
  }
  const deployment = of<{ spec: { replicas: number; template: { spec: PodSpec; metadata: { labels: Record<string, string> } } } }>("Deployment");
  pod = deployment.spec.template.spec;
  init = pod.initContainers.find((c) => c.name === "migrate")!;
  server = pod.containers.find((c) => c.name === "server")!;
});

describe("deploy/base agrees with the code", () => {
  it("lists every manifest in the kustomization, and nothing that is not there", async () => {
    const files = (await readdir(BASE)).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");
    expect([...kustomization.resources].sort()).toEqual(files.sort());
  });

  it("names only environment variables the config schema reads, and parses as a valid configuration", () => {
    for (const container of [init, server]) {
      for (const { name } of container.env ?? []) expect(CONFIG_VARIABLES, `${container.name}: ${name}`).toContain(name);
    }
    const secrets = { DATABASE_URL: "postgres://registry:secret@db:5432/registry" };
    expect(() => loadConfig(envOf(init, secrets), "migrate")).not.toThrow();
    const config = loadConfig(envOf(server, secrets), "serve");
    expect(config).toMatchObject({ appEnv: "prod", migrateOnStart: false, auth: { mode: "oidc" } });
    expect(config.listen.port).toBe(server.ports!.find((p) => p.name === "http")!.containerPort);
  });

  it("takes DATABASE_URL from a Secret in both containers, never as a literal", () => {
    for (const container of [init, server]) {
      const url = container.env!.find((e) => e.name === "DATABASE_URL")!;
      expect(url.value).toBeUndefined();
      expect(url.valueFrom?.secretKeyRef?.key).toBe("DATABASE_URL");
    }
  });

  it("reads the audit signing key from a Secret mounted read-only where AUDIT_SIGNING_KEY_FILE points", () => {
    const path = server.env!.find((e) => e.name === "AUDIT_SIGNING_KEY_FILE")!.value!;
    const mount = server.volumeMounts!.find((m) => m.mountPath === dirname(path))!;
    expect(mount.readOnly).toBe(true);
    const volume = pod.volumes.find((v) => v.name === mount.name)!;
    expect(volume.secret?.items?.map((i) => i.path)).toContain(path.slice(mount.mountPath.length + 1));
  });

  it("runs two replicas of one image, guarded by a PodDisruptionBudget over the same pods", () => {
    const deployment = of<{ spec: { replicas: number; selector: { matchLabels: Record<string, string> } } }>("Deployment");
    expect(deployment.spec.replicas).toBe(2);
    expect(init.image).toBe(server.image);
    const pdb = of<{ spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } }>("PodDisruptionBudget");
    expect(pdb.spec.minAvailable).toBe(1);
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    const service = of<{ spec: { selector: Record<string, string>; ports: { targetPort: string }[] } }>("Service");
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    expect(service.spec.ports.map((p) => p.targetPort)).toEqual(server.ports!.map((p) => p.name));
  });

  it("probes the serving port, and gives the drain its grace period plus the preStop pause", () => {
    for (const probe of [server.startupProbe, server.readinessProbe, server.livenessProbe]) {
      expect(probe?.httpGet.port).toBe("http");
    }
    expect(server.readinessProbe!.httpGet.path).toBe("/readyz");
    expect(server.livenessProbe!.httpGet.path).toBe("/healthz");
    const grace = loadConfig(envOf(server, { DATABASE_URL: "postgres://x@db/x" })).shutdownGraceMs / 1000;
    const pause = server.lifecycle!.preStop!.sleep!.seconds;
    expect(pause).toBeGreaterThan(0);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(grace + pause);
  });

  it("runs as the image's fixed non-root user, read-only, without privilege escalation or capabilities", async () => {
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    for (const container of [init, server]) {
      expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
      expect(container.resources?.requests?.cpu).toBeDefined();
      expect(container.resources?.limits?.memory).toBeDefined();
    }
    const dockerfile = await readFile(join(PACKAGE_ROOT, "Dockerfile"), "utf8");
    const user = /^USER (\d+):(\d+)$/m.exec(dockerfile);
    expect(user?.slice(1).map(Number)).toEqual([pod.securityContext.runAsUser, pod.securityContext.runAsGroup]);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["tenant-registry"\]$/m);
    expect(dockerfile).toMatch(/^CMD \["serve"\]$/m);
    // The image installs the artifact exactly as the artifact test does.
    expect(dockerfile).toContain("npm install /tmp/tenant-registry-*.tgz --omit=dev --omit=optional");
    expect(dockerfile).toMatch(/^FROM node:24-[\w-]+ AS runtime$/m);
    // Containers run the image's entrypoint (the CLI): args only, no command override.
    expect(init.command).toBeUndefined();
    expect(server.command).toBeUndefined();
  });
});

describe("the manifests' commands, run by the built CLI with the manifests' environment", () => {
  let db: TestDatabase;
  let keyDir: string;
  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error("dist/ is missing: run `make build` first (make test does)");
    db = await createTestDatabase({ migrate: false });
    keyDir = await mkdtemp(join(tmpdir(), "audit-key-"));
    await writeFile(join(keyDir, "key.pem"), generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }));
  });
  afterAll(async () => {
    await db?.drop();
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
  });

  it("the init container migrates the schema, and the server then serves every probe path on its port", async () => {
    const secrets = { DATABASE_URL: db.url };
    const migrate = await execFileP(process.execPath, [MAIN, ...init.args!], { env: { PATH: process.env["PATH"] ?? "", ...envOf(init, secrets) } });
    expect(migrate.stdout).toMatch(/applied 1_init\.sql[\s\S]*schema is now at version \d+/);

    // Only the address and the mounted key's path differ: the test cannot bind :8090 or mount a Secret.
    const running = await startCliServer([process.execPath, MAIN, ...server.args!], {
      ...envOf(server, secrets),
      ADDR: "127.0.0.1:0",
      AUDIT_SIGNING_KEY_FILE: join(keyDir, "key.pem"),
    });
    try {
      for (const probe of [server.startupProbe!, server.readinessProbe!, server.livenessProbe!]) {
        expect((await fetch(`${running.baseUrl}${probe.httpGet.path}`)).status, probe.httpGet.path).toBe(200);
      }
      expect(await running.stop()).toBe(0);
    } finally {
      await running.stop();
    }
  });
});
