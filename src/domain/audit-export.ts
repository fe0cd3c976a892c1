import type { KeyObject } from "node:crypto";
import {
  chainEventFromExportJson,
  ChainVerifier,
  checkpointFromJson,
  GENESIS_HASH,
  parseJsonKeepingNumbers,
  type ChainProblem,
  type Checkpoint,
} from "./audit-chain.js";

/**
 * Offline verification of an NDJSON export (`GET …/audit/events:export`):
 * the same ChainVerifier the database walk uses, fed from the file's lines one
 * at a time (memory stays constant). Two passes over the lines: the first
 * finds the chain and the export's own checkpoint (its last line), which the
 * verifier must know before the first event.
 */

export type ExportVerdict =
  | {
      readonly intact: true;
      readonly chainId: string;
      readonly lastSequence: bigint;
      readonly eventsChecked: bigint;
      /** Whether a checkpoint (the file's or one given) proves the tail is complete. */
      readonly tailSigned: boolean;
    }
  | {
      readonly intact: false;
      readonly chainId: string;
      readonly firstBadSequence: bigint;
      readonly problem: ChainProblem | "malformed";
      readonly detail: string;
    };

type Line = { readonly number: number; readonly json: Record<string, unknown> } | { readonly number: number; readonly problem: string };

async function* records(lines: AsyncIterable<string>): AsyncGenerator<Line> {
  let number = 0;
  for await (const raw of lines) {
    number += 1;
    if (raw.trim() === "") continue;
    let json: unknown;
    try {
      // Numbers kept as written: fields are hashed as PostgreSQL prints them.
      json = parseJsonKeepingNumbers(raw);
    } catch {
      yield { number, problem: `line ${number} is not JSON` };
      continue;
    }
    if (json === null || typeof json !== "object" || Array.isArray(json)) yield { number, problem: `line ${number} is not a JSON object` };
    else yield { number, json: json as Record<string, unknown> };
  }
}

export type ExportScan =
  | { readonly chainId: string | undefined; readonly checkpoint: Checkpoint | undefined }
  | { readonly problem: string; readonly line: number };

/** Pass one: the chain of the first event, and the checkpoint line (which must be the last). */
export async function scanExport(lines: AsyncIterable<string>): Promise<ExportScan> {
  let chainId: string | undefined;
  let checkpoint: Checkpoint | undefined;
  let checkpointLine = 0;
  for await (const r of records(lines)) {
    if ("problem" in r) return { problem: r.problem, line: r.number };
    if (checkpoint) return { problem: `line ${r.number} comes after the checkpoint line ${checkpointLine}, which must be the last`, line: r.number };
    if ("checkpoint" in r.json) {
      const parsed = checkpointFromJson(r.json["checkpoint"]);
      if ("problem" in parsed) return { problem: `line ${r.number}: checkpoint.${parsed.problem}`, line: r.number };
      checkpoint = parsed;
      checkpointLine = r.number;
    } else if ("event" in r.json) {
      if (chainId === undefined) {
        const e = chainEventFromExportJson(r.json["event"]);
        if ("problem" in e) return { problem: `line ${r.number}: event.${e.problem}`, line: r.number };
        chainId = e.chainId;
      }
    } else return { problem: `line ${r.number} is neither an event nor a checkpoint`, line: r.number };
  }
  return { chainId, checkpoint };
}

/**
 * Pass two: every event through one verifier per checkpoint (the file's and
 * one kept elsewhere). The file's checkpoint signed the export's last event,
 * so events after it are not covered: they count as broken.
 */
export async function verifyExport(
  lines: AsyncIterable<string>,
  chainId: string,
  checkpoints: { readonly file: Checkpoint | undefined; readonly given: Checkpoint | undefined },
  publicKey: KeyObject | undefined,
): Promise<ExportVerdict> {
  const base = { sequence: 0n, hash: GENESIS_HASH };
  const all = [checkpoints.file, checkpoints.given];
  const verifiers = (all.some(Boolean) ? all.filter((c) => c !== undefined) : [undefined]).map(
    (c) => new ChainVerifier(chainId, base, c, publicKey),
  );
  let last = 0n;
  for await (const r of records(lines)) {
    if ("problem" in r) return { intact: false, chainId, firstBadSequence: last + 1n, problem: "malformed", detail: r.problem };
    if (!("event" in r.json)) continue;
    const e = chainEventFromExportJson(r.json["event"]);
    if ("problem" in e) return { intact: false, chainId, firstBadSequence: last + 1n, problem: "malformed", detail: `line ${r.number}: event.${e.problem}` };
    if (!verifiers.map((v) => v.push(e)).every(Boolean)) break;
    last = e.sequence;
  }
  const verdicts = verifiers.map((v) => v.finish(undefined));
  for (const v of verdicts) {
    if (!v.intact) return { intact: false, chainId, firstBadSequence: v.firstBadSequence, problem: v.problem, detail: v.detail };
  }
  const verdict = verdicts[0]!;
  const cp = checkpoints.file;
  if (cp && verdict.lastSequence > cp.sequence) {
    return {
      intact: false,
      chainId,
      firstBadSequence: cp.sequence + 1n,
      problem: "checkpoint_mismatch",
      detail: `events after ${cp.sequence} are not covered by the export's checkpoint: they were added to the file`,
    };
  }
  return { intact: true, chainId, lastSequence: verdict.lastSequence, eventsChecked: verdict.eventsChecked, tailSigned: all.some(Boolean) };
}
