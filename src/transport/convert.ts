import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ProductCode as ProtoProductCode,
  TenantPlan as ProtoTenantPlan,
  TenantSchema,
  TenantStatus as ProtoTenantStatus,
  type Tenant as ProtoTenant,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import type { ProductCode, Tenant, TenantPlan, TenantStatus } from "../domain/tenant.js";

/**
 * Domain values are the database's lowercase enum labels ("active"); protobuf-es
 * enums carry the same names in upper case with the prefix stripped (ACTIVE).
 */
type ProtoEnum = Record<string, string | number>;

export function toProtoEnum<E extends ProtoEnum>(protoEnum: E, value: string): E[keyof E] {
  const number = protoEnum[value.toUpperCase()];
  if (typeof number !== "number") throw new TypeError(`no protobuf enum value for "${value}"`);
  return number as E[keyof E];
}

/** The domain label of a proto enum value, or undefined for UNSPECIFIED/unknown numbers. */
export function fromProtoEnum<T extends string>(protoEnum: ProtoEnum, value: number, labels: readonly T[]): T | undefined {
  const name = protoEnum[value];
  if (typeof name !== "string") return undefined;
  const label = name.toLowerCase();
  return (labels as readonly string[]).includes(label) ? (label as T) : undefined;
}

export const statusToProto = (s: TenantStatus) => toProtoEnum(ProtoTenantStatus, s);
export const planToProto = (p: TenantPlan) => toProtoEnum(ProtoTenantPlan, p);
export const productToProto = (p: ProductCode) => toProtoEnum(ProtoProductCode, p);

export function tenantToProto(t: Tenant): ProtoTenant {
  return create(TenantSchema, {
    id: t.id,
    slug: t.slug,
    name: t.name,
    status: statusToProto(t.status),
    plan: planToProto(t.plan),
    products: t.products.map(productToProto),
    createdAt: timestampFromDate(t.createdAt),
    updatedAt: timestampFromDate(t.updatedAt),
    metadata: { ...t.metadata },
    externalId: t.externalId ?? "",
    suspensionReason: t.suspensionReason,
  });
}
