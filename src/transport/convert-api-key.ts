import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ApiKeySchema,
  VerifyApiKeyCode as ProtoVerifyApiKeyCode,
  type ApiKey as ProtoApiKey,
} from "../../gen/breakpilot/tenantregistry/v1/api_key_pb.js";
import type { ApiKey, VerifyCode } from "../domain/api-key.js";
import { toProtoEnum } from "./convert.js";

const optionalTimestamp = (d: Date | null) => (d ? timestampFromDate(d) : undefined);

/** Metadata only: the proto message has no field for a secret or a hash. */
export function apiKeyToProto(k: ApiKey): ProtoApiKey {
  return create(ApiKeySchema, {
    id: k.id,
    tenantId: k.tenantId,
    projectId: k.projectId ?? "",
    name: k.name,
    prefix: k.prefix,
    scopes: [...k.scopes],
    expiresAt: optionalTimestamp(k.expiresAt),
    revokedAt: optionalTimestamp(k.revokedAt),
    lastUsedAt: optionalTimestamp(k.lastUsedAt),
    createdAt: timestampFromDate(k.createdAt),
    updatedAt: timestampFromDate(k.updatedAt),
    previousSecretExpiresAt: optionalTimestamp(k.previousExpiresAt),
  });
}

export const verifyCodeToProto = (code: VerifyCode) => toProtoEnum(ProtoVerifyApiKeyCode, code);
