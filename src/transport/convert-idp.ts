import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  IdpConfigSchema,
  IdpProtocol as ProtoIdpProtocol,
  type IdpConfig as ProtoIdpConfig,
} from "../../gen/breakpilot/tenantregistry/v1/idp_pb.js";
import { IDP_PROTOCOLS, type IdpConfig, type IdpProtocol } from "../domain/idp.js";
import { fromProtoEnum, toProtoEnum } from "./convert.js";

export const idpProtocolToProto = (p: IdpProtocol) => toProtoEnum(ProtoIdpProtocol, p);

/** The domain protocol, or undefined for UNSPECIFIED and unknown numbers. */
export const idpProtocolFromProto = (p: ProtoIdpProtocol) => fromProtoEnum(ProtoIdpProtocol, p, IDP_PROTOCOLS);

export function idpConfigToProto(c: IdpConfig): ProtoIdpConfig {
  return create(IdpConfigSchema, {
    tenantId: c.tenantId,
    protocol: idpProtocolToProto(c.protocol),
    issuerUrl: c.issuerUrl,
    clientId: c.clientId,
    clientSecretRef: c.clientSecretRef,
    keycloakRealm: c.keycloakRealm,
    emailDomains: [...c.emailDomains],
    enabled: c.enabled,
    createdAt: timestampFromDate(c.createdAt),
    updatedAt: timestampFromDate(c.updatedAt),
  });
}
