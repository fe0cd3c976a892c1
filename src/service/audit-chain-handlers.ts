import type { ServiceImpl } from "@connectrpc/connect";
import type { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { findChainHead } from "../db/queries/audit-chain.js";
import { findTenantRef } from "../db/queries/tenants.js";
import { PLATFORM_CHAIN, type AuditSigner } from "../domain/audit-chain.js";
import { InvalidArgumentError, NotFoundError } from "../domain/errors.js";
import { isUuid } from "../domain/ids.js";
import { checkpointFromProto, checkpointToProto, verdictToProto } from "../transport/convert-audit.js";
import { signChainHead, verifyStoredChain } from "./audit-chain.js";
import type { ServiceDeps } from "./deps.js";

/** "" is the platform chain; otherwise a tenant id (also of a deleted tenant, whose chain stays). */
function chainOf(tenantId: string): string {
  if (tenantId === "") return PLATFORM_CHAIN;
  if (!isUuid(tenantId)) throw InvalidArgumentError.field("tenant_id", "must be a UUID");
  return tenantId.toLowerCase();
}

export function createAuditChainHandlers({ db, clock }: ServiceDeps, signer: AuditSigner) {
  /** A chain exists when it has a head or its tenant exists (a new tenant's chain is empty, not unknown). */
  async function requireChain(chainId: string): Promise<void> {
    if (chainId === PLATFORM_CHAIN) return;
    if (!(await findChainHead(db, chainId)) && !(await findTenantRef(db, chainId))) {
      throw new NotFoundError("tenant", chainId);
    }
  }

  return {
    async verifyAuditChain(req) {
      const chainId = chainOf(req.tenantId);
      let checkpoint;
      if (req.checkpoint) {
        const parsed = checkpointFromProto(req.checkpoint);
        if ("problem" in parsed) throw InvalidArgumentError.field(`checkpoint.${parsed.problem.split(":")[0]}`, parsed.problem.split(": ").slice(1).join(": "));
        checkpoint = parsed;
      }
      await requireChain(chainId);
      return verdictToProto(await verifyStoredChain(db, chainId, checkpoint, signer.publicKey));
    },

    async getAuditCheckpoint(req) {
      const chainId = chainOf(req.tenantId);
      await requireChain(chainId);
      return { checkpoint: checkpointToProto(await signChainHead(db, signer, chainId, clock())) };
    },

    async getAuditPublicKey() {
      return { publicKeyPem: signer.publicKeyPem, keyId: signer.keyId };
    },
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}
