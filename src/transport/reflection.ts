import { createFileRegistry, toBinary, type DescFile, type DescService, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

// v1 and v1alpha are the same protocol under two package names; one implementation serves both.
type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
type Answer = v1.ServerReflectionResponse["messageResponse"];

const NOT_FOUND = 5; // google.rpc.Code.NOT_FOUND
const UNIMPLEMENTED = 12;

export const REFLECTION_SERVICES: readonly DescService[] = [v1.ServerReflection, v1alpha.ServerReflection];

/**
 * gRPC server reflection over the descriptors compiled into gen/, so `buf curl`
 * and grpcurl can list and call services without a local copy of the protos.
 */
export function registerReflection(router: ConnectRouter, registry: FileRegistry, services: readonly DescService[]): void {
  const listed = services.map((s) => s.typeName);
  const answer = (req: Request, sent: Set<string>): Answer => {
    const files = (file: DescFile | undefined, what: string): Answer => {
      if (!file) return { case: "errorResponse", value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } as v1.ErrorResponse };
      return {
        case: "fileDescriptorResponse",
        value: { fileDescriptorProto: withDependencies(file, sent) } as v1.FileDescriptorResponse,
      };
    };
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: listed.map((name) => ({ name })) } as v1.ListServiceResponse };
      case "fileByFilename":
        return files(registry.getFile(r.value), `file ${r.value}`);
      case "fileContainingSymbol":
        return files(fileContainingSymbol(registry, r.value), `symbol ${r.value}`);
      case "fileContainingExtension": {
        const extendee = registry.getMessage(r.value.containingType);
        const ext = extendee && registry.getExtensionFor(extendee, r.value.extensionNumber);
        return files(ext?.file, `extension ${r.value.containingType}:${r.value.extensionNumber}`);
      }
      case "allExtensionNumbersOfType": {
        const message = registry.getMessage(r.value);
        if (!message) return files(undefined, `type ${r.value}`);
        const numbers = [...registry].filter((t) => t.kind === "extension" && t.extendee.typeName === r.value).map((t) => (t as { number: number }).number);
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: r.value, extensionNumber: numbers } as v1.ExtensionNumberResponse };
      }
      default:
        return { case: "errorResponse", value: { errorCode: UNIMPLEMENTED, errorMessage: "unsupported reflection request" } as v1.ErrorResponse };
    }
  };

  async function* serverReflectionInfo(requests: AsyncIterable<Request>) {
    const sent = new Set<string>(); // each stream receives every file once
    for await (const req of requests) {
      yield { validHost: req.host, originalRequest: req, messageResponse: answer(req, sent) };
    }
  }
  router.service(v1.ServerReflection, { serverReflectionInfo } as never);
  router.service(v1alpha.ServerReflection, { serverReflectionInfo } as never);
}

function fileContainingSymbol(registry: FileRegistry, symbol: string): DescFile | undefined {
  const direct = registry.get(symbol);
  if (direct) return direct.file;
  // Methods and fields are not registry entries: look up their parent.
  const parent = symbol.slice(0, Math.max(0, symbol.lastIndexOf(".")));
  const owner = registry.get(parent);
  if (owner?.kind === "service" && owner.methods.some((m) => m.name === symbol.slice(parent.length + 1))) return owner.file;
  if (owner?.kind === "message" && owner.fields.some((f) => f.name === symbol.slice(parent.length + 1))) return owner.file;
  return undefined;
}

/** The file and its transitive imports, skipping what this stream already received. */
function withDependencies(file: DescFile, sent: Set<string>): Uint8Array[] {
  const out: Uint8Array[] = [];
  const visit = (f: DescFile) => {
    if (sent.has(f.proto.name)) return;
    sent.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    f.dependencies.forEach(visit);
  };
  visit(file);
  return out;
}

/** A registry holding the files of the given services and everything they import. */
export function registryOf(services: readonly DescService[]): FileRegistry {
  const byName = new Map<string, DescFile>();
  const collect = (f: DescFile) => {
    if (byName.has(f.proto.name)) return;
    byName.set(f.proto.name, f);
    f.dependencies.forEach(collect);
  };
  services.forEach((s) => collect(s.file));
  return createFileRegistry(
    ...services.map((s) => createFileRegistry(s.file.proto, (name) => byName.get(name))),
  );
}
