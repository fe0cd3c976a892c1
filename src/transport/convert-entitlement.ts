import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  EntitlementReason as ProtoEntitlementReason,
  ProductGrantSchema,
  type ProductGrant as ProtoProductGrant,
} from "../../gen/breakpilot/tenantregistry/v1/entitlement_pb.js";
import { ProductCode as ProtoProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import type { EntitlementReason, Limits, ProductGrant } from "../domain/entitlement.js";
import { PRODUCT_CODES, type ProductCode } from "../domain/tenant.js";
import { fromProtoEnum, productToProto, toProtoEnum } from "./convert.js";

/** The domain product of a proto value; undefined for UNSPECIFIED and unknown numbers. */
export const productFromProto = (value: number): ProductCode | undefined => fromProtoEnum(ProtoProductCode, value, PRODUCT_CODES);

export const entitlementReasonToProto = (reason: EntitlementReason) => toProtoEnum(ProtoEntitlementReason, reason);

/** A fresh plain object: proto maps are mutable, domain limits are not. */
export function limitsToProto(limits: Limits): { [key: string]: bigint } {
  return { ...limits };
}

export function grantToProto(g: ProductGrant): ProtoProductGrant {
  return create(ProductGrantSchema, {
    tenantId: g.tenantId,
    product: productToProto(g.product),
    expiresAt: g.expiresAt ? timestampFromDate(g.expiresAt) : undefined,
    limits: limitsToProto(g.limits),
    createdAt: timestampFromDate(g.createdAt),
    updatedAt: timestampFromDate(g.updatedAt),
  });
}
