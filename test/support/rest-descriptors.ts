import { create, createFileRegistry, setExtension, type DescService } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  MethodOptionsSchema,
  file_google_protobuf_descriptor,
} from "@bufbuild/protobuf/wkt";
import { file_google_api_annotations, http as httpRule } from "../../gen/google/api/annotations_pb.js";
import { file_google_api_http, HttpRuleSchema, type HttpRule } from "../../gen/google/api/http_pb.js";

export type RuleInit = Parameters<typeof create<typeof HttpRuleSchema>>[1];

const { STRING: TYPE_STRING, MESSAGE: TYPE_MESSAGE, ENUM: TYPE_ENUM } = FieldDescriptorProto_Type;
const { OPTIONAL, REPEATED } = FieldDescriptorProto_Label;

/**
 * A small service built at run time, one unary method per REST rule given, so
 * route-compiler tests can try annotations the real proto must never have
 * (duplicates, bad templates, unknown fields). Request: `id`, `name`, `tags`,
 * an `inner { id, colour }` message and a `colour` enum; response: `item`.
 */
export function serviceWithRules(rules: readonly RuleInit[]): DescService {
  const methods = rules.map((rule, i) => {
    const options = create(MethodOptionsSchema);
    setExtension(options, httpRule, create(HttpRuleSchema, rule) as HttpRule);
    return { name: `M${i}`, inputType: ".rt.v1.Req", outputType: ".rt.v1.Res", options };
  });
  const file = create(FileDescriptorProtoSchema, {
    name: "rt/v1/rt.proto",
    package: "rt.v1",
    syntax: "proto3",
    dependency: ["google/api/annotations.proto"],
    enumType: [{ name: "Colour", value: [{ name: "COLOUR_UNSPECIFIED", number: 0 }, { name: "COLOUR_DEEP_RED", number: 1 }] }],
    messageType: [
      {
        name: "Inner",
        field: [
          { name: "id", number: 1, type: TYPE_STRING, label: OPTIONAL, jsonName: "id" },
          { name: "colour", number: 2, type: TYPE_ENUM, typeName: ".rt.v1.Colour", label: OPTIONAL, jsonName: "colour" },
        ],
      },
      {
        name: "Req",
        field: [
          { name: "id", number: 1, type: TYPE_STRING, label: OPTIONAL, jsonName: "id" },
          { name: "display_name", number: 2, type: TYPE_STRING, label: OPTIONAL, jsonName: "displayName" },
          { name: "tags", number: 3, type: TYPE_STRING, label: REPEATED, jsonName: "tags" },
          { name: "inner", number: 4, type: TYPE_MESSAGE, typeName: ".rt.v1.Inner", label: OPTIONAL, jsonName: "inner" },
          { name: "colour", number: 5, type: TYPE_ENUM, typeName: ".rt.v1.Colour", label: OPTIONAL, jsonName: "colour" },
        ],
      },
      { name: "Res", field: [{ name: "item", number: 1, type: TYPE_MESSAGE, typeName: ".rt.v1.Inner", label: OPTIONAL, jsonName: "item" }] },
    ],
    service: [{ name: "Rt", method: methods }],
  });
  const registry = createFileRegistry(file, (name) =>
    ({ "google/api/annotations.proto": file_google_api_annotations, "google/api/http.proto": file_google_api_http, "google/protobuf/descriptor.proto": file_google_protobuf_descriptor })[name],
  );
  return registry.getService("rt.v1.Rt")!;
}
