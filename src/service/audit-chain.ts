import type { KeyObject } from "node:crypto";
import {
  applyRetentionCut,
  findChainHead,
  findLatestCheckpoint,
  findRetentionCut,
  inChainSnapshot,
  insertCheckpoint,
  listChainEvents,
  listRetentionCuts,
  listUncheckpointedHeads,
} from "../db/queries/audit-chain.js";
import type { Db } from "../db/queries/tenants.js";
import { toInstant } from "../domain/audit-query.js";
import {
  ChainVerifier,
  checkpointSignatureValid,
  GENESIS_HASH,
  type AuditSigner,
  type ChainVerdict,
  type Checkpoint,
} from "../domain/audit-chain.js";
import type { Logger } from "../logger.js";

/** Events read per query while verifying: memory stays bounded however long the chain. */
export const VERIFY_BATCH = 2_000;

/**
 * Walks a chain from its base in keyset batches, in one snapshot, and checks
 * it against its recorded head, its signed base and optionally a checkpoint.
 */
export async function verifyStoredChain(
  db: Db,
  chainId: string,
  checkpoint: Checkpoint | undefined,
  publicKey: KeyObject,
  batch = VERIFY_BATCH,
): Promise<ChainVerdict> {
  return inChainSnapshot(db, async (tx) => {
    const head = await findChainHead(tx, chainId);
    const baseSequence = head?.baseSequence ?? 0n;
    const cut = baseSequence > 0n ? await findRetentionCut(tx, chainId, baseSequence) : null;
    const verifier = new ChainVerifier(
      chainId,
      { sequence: baseSequence, hash: head?.baseHash ?? GENESIS_HASH, cut: cut ?? undefined },
      checkpoint,
      publicKey,
    );
    let after = baseSequence;
    // Rows below the base would be a retention that did not go through the one path.
    for (;;) {
      const events = await listChainEvents(tx, chainId, after, batch);
      for (const e of events) if (!verifier.push(e)) break;
      if (verifier.isBroken || events.length < batch) break;
      after = events.at(-1)!.sequence;
    }
    return verifier.finish(head ? { sequence: head.sequence, hash: head.hash } : undefined);
  });
}

/** Where a chain starts, for the `base` line of a full export (rest-export.ts). */
export type ChainBaseReader = {
  /** The signed retention cut that made `sequence` the chain's base, or null. */
  cutAt(chainId: string, sequence: bigint): Promise<Checkpoint | null>;
  /** Where the chain starts now: sequence 0 and the genesis hash until retention cuts it. */
  baseOf(chainId: string): Promise<{ readonly sequence: bigint; readonly hash: string }>;
};

export function chainBaseReader(db: Db): ChainBaseReader {
  return {
    cutAt: (chainId, sequence) => findRetentionCut(db, chainId, sequence),
    async baseOf(chainId) {
      const head = await findChainHead(db, chainId);
      return { sequence: head?.baseSequence ?? 0n, hash: head?.baseHash ?? GENESIS_HASH };
    },
  };
}

/**
 * Signs the chain's current head (sequence 0 and the genesis hash for an empty chain) and stores
 * the checkpoint. A head already signed with this key is answered with that checkpoint (its
 * signature checked): the table is append-only, and a caller asking in a loop would otherwise
 * add a row per call.
 */
export async function signChainHead(db: Db, signer: AuditSigner, chainId: string, now: Date): Promise<Checkpoint> {
  const head = await findChainHead(db, chainId);
  const latest = await findLatestCheckpoint(db, chainId);
  const sequence = head?.sequence ?? 0n;
  const hash = head?.hash ?? GENESIS_HASH;
  // Only a checkpoint this key really signed: the row is the database's, and whoever can write
  // there must not get a forged one handed out in the service's name.
  if (
    latest &&
    latest.sequence === sequence &&
    latest.hash === hash &&
    latest.keyId === signer.keyId &&
    checkpointSignatureValid(latest, signer.publicKey)
  ) {
    return latest;
  }
  const checkpoint = signer.sign({ chainId, sequence, hash }, toInstant(now));
  await insertCheckpoint(db, checkpoint);
  return checkpoint;
}

/** Periodic signing: every chain whose head moved since its last checkpoint. */
export async function signMovedHeads(db: Db, signer: AuditSigner, now: Date, limit = 1_000): Promise<number> {
  const heads = await listUncheckpointedHeads(db, limit);
  for (const head of heads) await insertCheckpoint(db, signer.sign(head, toInstant(now)));
  return heads.length;
}

/** Events removed per retention transaction. */
export const RETENTION_BATCH = 5_000;

/**
 * One retention pass: for every chain with events older than its retention,
 * cuts them in batches through audit_apply_retention (the one allowed delete);
 * each cut's new base is signed. Returns how many events went.
 */
export async function applyRetention(
  db: Db,
  signer: AuditSigner,
  now: Date,
  defaultRetentionMs: number | undefined,
  batch = RETENTION_BATCH,
): Promise<number> {
  let removed = 0;
  for (;;) {
    const cuts = await listRetentionCuts(db, now, defaultRetentionMs, batch);
    if (cuts.length === 0) return removed;
    for (const cut of cuts) {
      const signed = signer.sign({ chainId: cut.chainId, sequence: cut.through, hash: cut.hash }, toInstant(now));
      removed += await db.transaction((tx) => applyRetentionCut(tx, signed));
    }
  }
}

/**
 * Off the request path: signs moved heads every `checkpointIntervalMs` and
 * applies retention (when configured) on the same tick. Failures are logged
 * and retried next tick; stops on shutdown.
 */
export function startAuditHousekeeping(options: {
  readonly db: Db;
  readonly signer: AuditSigner;
  readonly clock: () => Date;
  readonly logger: Logger;
  readonly shutdownSignal: AbortSignal;
  readonly checkpointIntervalMs: number;
  readonly retentionMs: number | undefined;
}): void {
  const { db, signer, clock, logger, shutdownSignal } = options;
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try {
      const removed = await applyRetention(db, signer, clock(), options.retentionMs);
      if (removed > 0) logger.info({ removed }, "audit retention removed events; their last hash is the chain's signed base");
      const signed = await signMovedHeads(db, signer, clock());
      if (signed > 0) logger.debug({ signed }, "signed audit chain checkpoints");
    } catch (error) {
      logger.warn({ err: error }, "audit checkpoint or retention pass failed; will retry");
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void run(), options.checkpointIntervalMs);
  timer.unref();
  shutdownSignal.addEventListener("abort", () => clearInterval(timer), { once: true });
}
