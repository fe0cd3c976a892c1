import { execFile } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/paths.js";

const execFileP = promisify(execFile);
const BUF = join(PACKAGE_ROOT, "node_modules", ".bin", "buf");

/** Exactly what a Go/Python/Java user needs: ours, plus the third-party files named in the Makefile. */
const EXPECTED_FILES = [
  "breakpilot/tenantregistry/v1/api_key.proto",
  "breakpilot/tenantregistry/v1/audit.proto",
  "breakpilot/tenantregistry/v1/entitlement.proto",
  "breakpilot/tenantregistry/v1/idp.proto",
  "breakpilot/tenantregistry/v1/project.proto",
  "breakpilot/tenantregistry/v1/tenant.proto",
  "breakpilot/tenantregistry/v1/tenant_registry_service.proto",
  "google/api/annotations.proto",
  "google/api/http.proto",
  "google/rpc/error_details.proto",
  "grpc/reflection/v1/reflection.proto",
  "health/v1/health.proto",
];

let work: string;
let bundle: string;
let image: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "proto-bundle-"));
  const out = join(work, "from-make");
  await execFileP("make", ["--no-print-directory", "protos", `PROTOS_OUT=${out}/protos`, `PROTOS_IMAGE=${out}/tenant-registry.binpb`], {
    cwd: PACKAGE_ROOT,
    timeout: 60_000,
  });
  // Somewhere with no buf.yaml above it, no node_modules and an empty buf cache: nothing
  // of this repository can fill a gap in the bundle.
  bundle = join(work, "elsewhere", "protos");
  image = join(out, "tenant-registry.binpb");
  await cp(join(out, "protos"), bundle, { recursive: true });
}, 90_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** buf with no network, no home and no cache of ours. */
async function isolatedBuf(args: string[]) {
  const home = join(work, "home");
  return execFileP(BUF, args, {
    cwd: join(work, "elsewhere"),
    env: { PATH: process.env["PATH"] ?? "", HOME: home, BUF_CACHE_DIR: join(home, "cache"), HTTPS_PROXY: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9" },
    timeout: 60_000,
  });
}

describe("make protos: the bundle for other languages", () => {
  it("holds our protos plus exactly the google/api, rpc error details, health and reflection files", async () => {
    const files = (await readdir(bundle, { recursive: true, withFileTypes: true }))
      .filter((f) => f.isFile())
      .map((f) => relative(bundle, join(f.parentPath, f.name)))
      .sort();
    expect(files).toEqual(EXPECTED_FILES);
  });

  it("compiles standalone with buf, offline, into an image describing the whole service", async () => {
    const built = join(work, "standalone.binpb");
    await isolatedBuf(["build", "protos", "-o", built]);
    const set = fromBinary(FileDescriptorSetSchema, await readFile(built));
    const service = set.file.find((f) => f.name === "breakpilot/tenantregistry/v1/tenant_registry_service.proto");
    expect(service?.service.map((s) => s.name)).toEqual(["TenantRegistryService"]);
    expect(service?.service[0]?.method.map((m) => m.name)).toContain("VerifyApiKey");
    // Well-known types come from the compiler itself, as protoc's include/ provides them.
    expect(set.file.map((f) => f.name)).toEqual(expect.arrayContaining(["google/protobuf/timestamp.proto", ...EXPECTED_FILES]));
  });

  it("generates code from the bundle alone (buf generate with a local plugin)", async () => {
    const genConfig = [
      "version: v2",
      "plugins:",
      `  - local: ${join(PACKAGE_ROOT, "node_modules", ".bin", "protoc-gen-es")}`,
      "    out: out",
      "    opt: [target=ts]",
      "inputs:",
      "  - directory: protos",
    ].join("\n");
    await writeFile(join(work, "elsewhere", "buf.gen.yaml"), genConfig);
    await isolatedBuf(["generate"]);
    const generated = await readFile(join(work, "elsewhere", "out", "breakpilot", "tenantregistry", "v1", "tenant_registry_service_pb.ts"), "utf8");
    expect(generated).toContain("export const TenantRegistryService");
  });

  it("ships the same descriptors as the image make protos writes", async () => {
    const set = fromBinary(FileDescriptorSetSchema, await readFile(image));
    expect(set.file.map((f) => f.name)).toEqual(expect.arrayContaining(EXPECTED_FILES));
  });
});
