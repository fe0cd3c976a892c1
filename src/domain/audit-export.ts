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
 * finds the chain, the export's base (its first line, when retention has cut
 * the chain) and its checkpoint (its last line), which the verifier must know
 * before the first event.
 */

export type ExportVerdict =
  | {
      readonly intact: true;
      readonly chainId: string;
      readonly lastSequence: bigint;
      readonly eventsChecked: bigint;
      /** Where the file's chain starts: 0, or the signed retention cut of its base line. */
      readonly baseSequence: bigint;
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
  | { readonly chainId: string | undefined; readonly base: Checkpoint | undefined; readonly checkpoint: Checkpoint | undefined }
  | { readonly problem: string; readonly line: number };

/** Pass one: the chain of the first event, the base line (which must be the first) and the checkpoint line (the last). */
export async function scanExport(lines: AsyncIterable<string>): Promise<ExportScan> {
  let chainId: string | undefined;
  let base: Checkpoint | undefined;
  let checkpoint: Checkpoint | undefined;
  let checkpointLine = 0;
  let seen = 0;
  for await (const r of records(lines)) {
    if ("problem" in r) return { problem: r.problem, line: r.number };
    if (checkpoint) return { problem: `line ${r.number} comes after the checkpoint line ${checkpointLine}, which must be the last`, line: r.number };
    seen += 1;
    if ("base" in r.json) {
      if (seen > 1) return { problem: `line ${r.number}: a base line must be the file's first`, line: r.number };
      const parsed = checkpointFromJson(r.json["base"]);
      if ("problem" in parsed) return { problem: `line ${r.number}: base.${parsed.problem}`, line: r.number };
      base = parsed;
    } else if ("checkpoint" in r.json) {
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
    } else return { problem: `line ${r.number} is neither an event, a base nor a checkpoint`, line: r.number };
  }
  return { chainId, base, checkpoint };
}

/**
 * Pass two: every event through one verifier per checkpoint (the file's and
 * one kept elsewhere), from the file's signed base (genesis without one). The
 * file's checkpoint signed the export's last event, so events after it are not
 * covered: they count as broken. Without any checkpoint nothing proves the
 * newest events are all there (a full export always ends with one), so that
 * is a missing tail too.
 */
export async function verifyExport(
  lines: AsyncIterable<string>,
  chainId: string,
  signed: { readonly base: Checkpoint | undefined; readonly file: Checkpoint | undefined; readonly given: Checkpoint | undefined },
  publicKey: KeyObject | undefined,
): Promise<ExportVerdict> {
  const base = signed.base ? { sequence: signed.base.sequence, hash: signed.base.hash, cut: signed.base } : { sequence: 0n, hash: GENESIS_HASH };
  const all = [signed.file, signed.given].filter((c) => c !== undefined);
  const verifiers = (all.length > 0 ? all : [undefined]).map((c) => new ChainVerifier(chainId, base, c, publicKey));
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
  if (all.length === 0) {
    return {
      intact: false,
      chainId,
      firstBadSequence: verdict.lastSequence + 1n,
      problem: "missing_tail",
      detail: `the events up to ${verdict.lastSequence} verify, but the file has no checkpoint line (a full export ends with one) and none was given: nothing proves the newest events are all here`,
    };
  }
  const cp = signed.file;
  if (cp && verdict.lastSequence > cp.sequence) {
    return {
      intact: false,
      chainId,
      firstBadSequence: cp.sequence + 1n,
      problem: "checkpoint_mismatch",
      detail: `events after ${cp.sequence} are not covered by the export's checkpoint: they were added to the file`,
    };
  }
  return { intact: true, chainId, baseSequence: base.sequence, lastSequence: verdict.lastSequence, eventsChecked: verdict.eventsChecked };
}
