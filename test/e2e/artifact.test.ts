import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { tokenFor } from "../support/auth.js";
import { startCliServer, type CliServer } from "../support/cli-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { uniqueSlug } from "../support/fixtures.js";
import { startOidcIssuer, type OidcIssuer } from "../support/oidc-issuer.js";
import { parsePrometheus, valueOf } from "../support/prometheus.js";
import { clientFor } from "../support/server.js";

// What the image holds is exactly this: `npm pack` of the build, installed with
// --omit=dev --omit=optional into an empty folder. The init container and the
// server are these two commands, run from a read-only folder as nobody.
const execFileP = promisify(execFile);
const NODE_BIN = dirname(process.execPath);
const npm = (args: string[], cwd: string) =>
  execFileP("npm", args, { cwd, env: { ...process.env, PATH: `${NODE_BIN}:${process.env["PATH"]}` }, timeout: 240_000 });

/** Runs as nobody (uid 65534, no supplementary groups) when the test is root, as the image's fixed non-root user does. */
const AS_UNPRIVILEGED = userInfo().uid === 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] : [];

let work: string;
let app: string;
let bin: string;
let packed: string[];
let db: TestDatabase;
let issuer: OidcIssuer;
let signingKey: string;

beforeAll(async () => {
  const main = join(PACKAGE_ROOT, "dist", "bin", "main.js");
  if (!existsSync(main)) throw new Error("dist/ is missing: run `make build` first (make test does)");
  if (!existsSync(join(PACKAGE_ROOT, "dist", "protos"))) throw new Error("dist/protos is missing: run `make protos` first (make test does)");
  // The incremental build touches the stamp, not every output.
  const built = (await stat(join(PACKAGE_ROOT, "dist", ".build-stamp")).catch(() => stat(main))).mtimeMs;
  for (const file of (await readdir(join(PACKAGE_ROOT, "src"), { recursive: true })).filter((f) => f.endsWith(".ts"))) {
    if ((await stat(join(PACKAGE_ROOT, "src", file))).mtimeMs > built) throw new Error(`dist/ is older than src/${file}: run \`make build\``);
  }
  work = await mkdtemp(join(tmpdir(), "artifact-"));
  await chmod(work, 0o755); // mkdtemp makes it 0700: nobody could not even enter it
  const { stdout } = await npm(["pack", "--json", "--pack-destination", work], PACKAGE_ROOT);
  const [info] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
  packed = info.files.map((f) => f.path);

  app = join(work, "app");
  await execFileP("mkdir", [app]);
  await writeFile(join(app, "package.json"), JSON.stringify({ name: "registry-image", private: true }));
  await npm(["install", join(work, info.filename), "--omit=dev", "--omit=optional", "--prefer-offline", "--no-audit", "--no-fund"], app);
  await execFileP("chmod", ["-R", "a-w", app]);
  bin = join(app, "node_modules", ".bin", "tenant-registry");

  db = await createTestDatabase({ migrate: false });
  issuer = await startOidcIssuer();
  // Readable by the unprivileged user, like the mounted Secret.
  signingKey = join(work, "audit-signing-key.pem");
  await writeFile(signingKey, generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o644 });
}, 300_000);

afterAll(async () => {
  await issuer?.stop();
  await db?.drop();
  if (work) {
    await execFileP("chmod", ["-R", "u+w", work]);
    await rm(work, { recursive: true, force: true });
  }
});

/** The image's environment: production, nothing but what the manifests set. */
const prodEnv = () => ({
  PATH: `${NODE_BIN}:/usr/bin:/bin`,
  APP_ENV: "prod",
  DATABASE_URL: db.url,
  KEYCLOAK_ISSUER: issuer.issuer,
  AUDIT_SIGNING_KEY_FILE: signingKey,
  HOME: "/nonexistent",
});

describe("the packed artifact (make dist)", () => {
  it("holds the compiled code, migrations, protos and package.json, and no tests, sources or source maps", () => {
    expect(packed).toEqual(
      expect.arrayContaining([
        "package.json",
        "dist/bin/main.js",
        "dist/bin/serve.js",
        "dist/src/client/index.js",
        "migrations/1_init.sql",
        "migrations/down/1_init.sql",
        "dist/protos/breakpilot/tenantregistry/v1/tenant_registry_service.proto",
      ]),
    );
    expect(packed.some((p) => p.startsWith("dist/gen/"))).toBe(true);
    const unwanted = packed.filter((p) => /(^|\/)test\/|\.test\.|\.map$|^src\/|^gen\/|^proto\/|\.ts$/.test(p) && !p.endsWith(".d.ts"));
    expect(unwanted).toEqual([]);
  });

  it("runs migrate up from a read-only install as an unprivileged user, then serves with MIGRATE_ON_START=false", async () => {
    if (AS_UNPRIVILEGED.length) expect((await execFileP(...unprivileged(["id", "-u"]))).stdout.trim()).toBe("65534");
    // The install really is read-only to the user that runs it.
    const probe = await execFileP(...unprivileged(["sh", "-c", `touch ${join(app, "probe")} 2>&1 || echo denied`])).then((r) => r.stdout);
    expect(probe).toContain("denied");

    const migrate = await execFileP(...unprivileged([bin, "migrate", "up"]), { cwd: app, env: prodEnv(), timeout: 60_000 });
    expect(migrate.stdout).toContain("applied 1_init.sql");

    let server: CliServer | undefined;
    try {
      server = await serveInstalled({ METRICS_ADDR: "127.0.0.1:0" });
      expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);
      // The installed command runs Node with its shebang's flags (src/main.ts: the young-generation cap).
      if (process.platform === "linux") {
        const argv = (await readFile(`/proc/${server.pid}/cmdline`, "utf8")).split("\0");
        expect(argv).toEqual(expect.arrayContaining(["--max-semi-space-size=16", "--max-old-space-size=1024"]));
      }

      const token = await tokenFor(issuer, "platform-admin");
      const registry = clientFor(TenantRegistryService, server.baseUrl, "grpc", { authorization: `Bearer ${token}` });
      const slug = uniqueSlug("artifact");
      const { tenant } = await registry.createTenant({ slug, name: "From the artifact" });
      expect((await registry.getTenantBySlug({ slug })).tenant?.id).toBe(tenant?.id);
      const anonymous = await clientFor(TenantRegistryService, server.baseUrl, "connect-json-h1").getTenant({ id: tenant!.id }).catch((e: unknown) => e);
      expect(ConnectError.from(anonymous).code).toBe(Code.Unauthenticated);

      // The metrics listener on METRICS_ADDR, with the process defaults and start-up time.
      const metricsPort = /"msg":"metrics on [^"]*:(\d+)"/.exec(server.output())?.[1];
      expect(metricsPort).toBeDefined();
      const samples = parsePrometheus(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
      expect(valueOf(samples, "tenant_registry_rpc_requests_total", { method: "CreateTenant", protocol: "grpc", code: "ok" })).toBe(1);
      expect(valueOf(samples, "tenant_registry_startup_seconds")).toBeGreaterThan(0);
      expect(samples.some((s) => s.name === "process_cpu_user_seconds_total")).toBe(true);
      expect(samples.some((s) => s.name === "nodejs_eventloop_lag_seconds")).toBe(true);

      expect(await server.stop()).toBe(0);
      expect(server.output()).toContain('"msg":"stopped"');
    } finally {
      await server?.stop();
    }
  });
  it("starts from the compile cache `preload` fills at image build, read-only to the unprivileged user that fills and reads it", async () => {
    // As the Dockerfile does: the cache's folder belongs to the user for `preload`, then to root.
    const cache = join(work, "compile-cache");
    await execFileP("mkdir", [cache]);
    if (AS_UNPRIVILEGED.length) await execFileP("chown", ["65534:65534", cache]);
    await execFileP(...unprivileged([bin, "preload"]), { cwd: app, env: { PATH: prodEnv().PATH, NODE_COMPILE_CACHE: cache }, timeout: 60_000 });
    // Node writes its cache files 0600: without this, the user could not read them once root owns them.
    await execFileP(...unprivileged(["chmod", "-R", "a+rX,a-w", cache]));
    if (AS_UNPRIVILEGED.length) await execFileP("chown", ["-R", "0:0", cache]);

    let server: CliServer | undefined;
    try {
      server = await serveInstalled({ NODE_COMPILE_CACHE: cache, NODE_DEBUG_NATIVE: "COMPILE_CACHE" });
      expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);
      const accepted = (server.output().match(/V8 code cache for ESM \S+ was accepted/g) ?? []).length;
      // The command is the bundle: its entry and the serve chunk, not the modules tsc emits.
      const installed = join(app, "node_modules", "tenant-registry", "dist", "bin");
      expect(server.output()).toContain(`V8 code cache for ESM file://${installed}/main.js was accepted`);
      expect(server.output()).toContain(`V8 code cache for ESM file://${installed}/serve.js was accepted`);
      expect(server.output()).not.toContain(`${join(app, "node_modules", "tenant-registry", "dist", "src")}/`);
      expect(accepted).toBeGreaterThan(5);
      expect(server.output()).not.toMatch(/code cache for \S+ was rejected/);
      expect(await server.stop()).toBe(0);
    } finally {
      await server?.stop();
    }
  });
});

/** `serve` from the read-only install, as the unprivileged user, after the init container's migrations. */
function serveInstalled(env: Record<string, string>): Promise<CliServer> {
  return startCliServer([...AS_UNPRIVILEGED, bin, "serve"], { ...prodEnv(), ADDR: "127.0.0.1:0", MIGRATE_ON_START: "false", ...env }, { cwd: app });
}

/** The command line, run as the unprivileged user. */
function unprivileged(argv: readonly string[]): [string, string[]] {
  const full = [...AS_UNPRIVILEGED, ...argv];
  return [full[0]!, full.slice(1)];
}
