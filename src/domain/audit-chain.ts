import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";

/**
 * The tamper-evident audit chain, recomputed outside the database: the
 * canonical form (the same bytes audit_canonical() in migrations/4 builds),
 * checkpoint signatures, and a streaming verifier with bounded memory.
 * No SQL, no protobuf: the same code checks the database and an export file.
 */

export const PLATFORM_CHAIN = "00000000-0000-0000-0000-000000000000";
export const GENESIS_HASH = "0".repeat(64);
const CANONICAL_HEADER = "tenant-registry-audit-v1\n";
const CHECKPOINT_HEADER = "tenant-registry-audit-checkpoint-v1\n";

/** One event as its chain hashes it: every value as PostgreSQL prints it, null for absent. */
export type ChainEvent = {
  readonly chainId: string;
  readonly sequence: bigint;
  readonly id: string;
  /** RFC 3339 UTC with six fractional digits. */
  readonly createdAt: string;
  readonly action: string;
  readonly crud: string;
  readonly actorId: string | null;
  readonly actorName: string | null;
  readonly actorType: string | null;
  readonly actorHref: string | null;
  readonly targetId: string | null;
  readonly targetName: string | null;
  readonly targetType: string | null;
  /** host(source_ip). */
  readonly sourceIp: string | null;
  readonly description: string;
  /** fields::text, PostgreSQL's jsonb text (see jsonbText). */
  readonly fieldsJson: string;
  readonly isFailure: boolean;
  readonly isAnonymous: boolean;
  readonly component: string;
  readonly externalId: string | null;
  readonly previousHash: string;
  readonly hash: string;
};

function value(v: string | null): string {
  return v === null ? "-\n" : `${Buffer.byteLength(v, "utf8")}:${v}\n`;
}

/** The canonical form (version 1) as bytes; see the README's "Audit log integrity". */
export function canonicalEvent(e: ChainEvent): Buffer {
  return Buffer.from(
    CANONICAL_HEADER +
      value(e.chainId) +
      value(e.sequence.toString()) +
      value(e.id) +
      value(e.createdAt) +
      value(e.action) +
      value(e.crud) +
      value(e.actorId) +
      value(e.actorName) +
      value(e.actorType) +
      value(e.actorHref) +
      value(e.targetId) +
      value(e.targetName) +
      value(e.targetType) +
      value(e.sourceIp) +
      value(e.description) +
      value(e.fieldsJson) +
      value(String(e.isFailure)) +
      value(String(e.isAnonymous)) +
      value(e.component) +
      value(e.externalId),
    "utf8",
  );
}

/** SHA-256(previous hash ‖ canonical(event)), lowercase hex. */
export function chainHash(previousHash: string, e: ChainEvent): string {
  return createHash("sha256").update(Buffer.from(previousHash, "hex")).update(canonicalEvent(e)).digest("hex");
}

/** A JSON number kept as the text it was written as (see parseJsonKeepingNumbers). */
export type JsonNumberText = { readonly numberText: string };

/** JSON.parse, with every number kept as its source text so jsonbText can print it exactly. */
export function parseJsonKeepingNumbers(text: string): unknown {
  return JSON.parse(text, (_key, v: unknown, context?: { source?: string }) =>
    typeof v === "number" ? ({ numberText: context?.source ?? String(v) } satisfies JsonNumberText) : v,
  );
}

function utf8Compare(a: string, b: string): number {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length - y.length || Buffer.compare(x, y);
}

/**
 * A JSON value as PostgreSQL prints jsonb: object keys ordered by UTF-8 byte
 * length, then bytewise; ", " and ": " separators; strings escaped like
 * JSON.stringify; numbers as written (jsonb prints them in plain decimal).
 */
export function jsonbText(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return plainDecimal(String(v));
  if (Array.isArray(v)) return `[${v.map(jsonbText).join(", ")}]`;
  if (typeof v === "object") {
    if ("numberText" in v && Object.keys(v).length === 1) return plainDecimal((v as JsonNumberText).numberText);
    const entries = Object.entries(v as Record<string, unknown>).sort(([a], [b]) => utf8Compare(a, b));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}: ${jsonbText(x)}`).join(", ")}}`;
  }
  throw new TypeError(`not a JSON value: ${typeof v}`);
}

/**
 * A JSON number in the plain decimal jsonb prints: `1e+21` is stored as
 * numeric 1000000000000000000000, `1.5e-7` as 0.00000015 (the digits shift,
 * none are lost or added, as numeric_in keeps them).
 */
function plainDecimal(text: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?[eE]([+-]?\d+)$/.exec(text);
  if (!m) return text;
  const [, sign, int, frac = ""] = m;
  const digits = int! + frac;
  const point = int!.length + Number(m[4]);
  let plain: string;
  if (point <= 0) plain = `0.${"0".repeat(-point)}${digits}`;
  else if (point >= digits.length) plain = digits + "0".repeat(point - digits.length);
  else plain = `${digits.slice(0, point)}.${digits.slice(point)}`;
  plain = plain.replace(/^0+(?=\d)/, "");
  return sign + plain;
}

// ---- Export files ----

/**
 * One `{"event":{…}}` line of an NDJSON export (the REST JSON of an
 * AuditEvent) as its chain hashes it. The service stores no empty strings in
 * the nullable columns (empty input is NULL), so "" and an absent value both
 * read back as NULL; `fields` needs parseJsonKeepingNumbers to keep numbers exact.
 */
export function chainEventFromExportJson(json: unknown): ChainEvent | { readonly problem: string } {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return { problem: "an event is a JSON object" };
  const o = json as Record<string, unknown>;
  const sub = (k: string) => (o[k] !== null && typeof o[k] === "object" ? (o[k] as Record<string, unknown>) : {});
  const text = (v: unknown) => (typeof v === "string" ? v : "");
  const nullable = (v: unknown) => (typeof v === "string" && v !== "" ? v : null);
  const chainId = text(o["chainId"]);
  const sequence = text(o["sequence"]);
  const createdAt = normaliseInstant(text(o["createdAt"]));
  if (!UUID.test(chainId)) return { problem: "chainId: must be a lowercase UUID" };
  if (!/^[1-9]\d{0,18}$/.test(sequence)) return { problem: "sequence: must be a positive integer" };
  if (!INSTANT.test(createdAt)) return { problem: "createdAt: must be an RFC 3339 UTC timestamp" };
  for (const k of ["hash", "previousHash"]) if (!HEX64.test(text(o[k]))) return { problem: `${k}: must be 64 lowercase hex digits` };
  const actor = sub("actor");
  const target = sub("target");
  return {
    chainId,
    sequence: BigInt(sequence),
    id: text(o["id"]),
    createdAt,
    action: text(o["action"]),
    crud: text(o["crud"]),
    actorId: nullable(actor["id"]),
    actorName: nullable(actor["name"]),
    actorType: nullable(actor["type"]),
    actorHref: nullable(actor["href"]),
    targetId: nullable(target["id"]),
    targetName: nullable(target["name"]),
    targetType: nullable(target["type"]),
    sourceIp: nullable(o["sourceIp"]),
    description: text(o["description"]),
    fieldsJson: jsonbText(o["fields"] ?? {}),
    isFailure: o["isFailure"] === true,
    isAnonymous: o["isAnonymous"] === true,
    component: text(o["component"]),
    externalId: nullable(o["externalId"]),
    previousHash: text(o["previousHash"]),
    hash: text(o["hash"]),
  };
}

// ---- Signed checkpoints ----

/** A signed chain head (also a signed retention base). */
export type Checkpoint = {
  readonly chainId: string;
  readonly sequence: bigint;
  readonly hash: string;
  /** RFC 3339 UTC with six fractional digits. */
  readonly signedAt: string;
  readonly keyId: string;
  readonly signature: Buffer;
};

export function checkpointMessage(c: Omit<Checkpoint, "keyId" | "signature">): Buffer {
  return Buffer.from(`${CHECKPOINT_HEADER}${c.chainId}\n${c.sequence}\n${c.hash}\n${c.signedAt}\n`, "utf8");
}

/** First 16 hex digits of SHA-256 of the raw 32-byte Ed25519 public key. */
export function keyIdOf(publicKey: KeyObject): string {
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  return createHash("sha256").update(raw).digest("hex").slice(0, 16);
}

export type AuditSigner = {
  readonly keyId: string;
  readonly publicKey: KeyObject;
  readonly publicKeyPem: string;
  sign(head: { chainId: string; sequence: bigint; hash: string }, signedAt: string): Checkpoint;
};

export function createAuditSigner(privateKey: KeyObject): AuditSigner {
  if (privateKey.asymmetricKeyType !== "ed25519") throw new TypeError("the audit signing key must be an Ed25519 key");
  const publicKey = createPublicKey(privateKey);
  const keyId = keyIdOf(publicKey);
  return {
    keyId,
    publicKey,
    publicKeyPem: publicKey.export({ format: "pem", type: "spki" }).toString(),
    sign(head, signedAt) {
      const unsigned = { chainId: head.chainId, sequence: head.sequence, hash: head.hash, signedAt };
      return { ...unsigned, keyId, signature: sign(null, checkpointMessage(unsigned), privateKey) };
    },
  };
}

export function checkpointSignatureValid(c: Checkpoint, publicKey: KeyObject): boolean {
  if (c.keyId !== keyIdOf(publicKey)) return false;
  try {
    return verify(null, checkpointMessage(c), publicKey, c.signature);
  } catch {
    return false;
  }
}

/** The JSON a checkpoint is kept as (`audit checkpoint` prints it, `audit verify --checkpoint` reads it). */
export function checkpointToJson(c: Checkpoint) {
  return {
    chain_id: c.chainId,
    sequence: c.sequence.toString(),
    hash: c.hash,
    signed_at: c.signedAt,
    key_id: c.keyId,
    signature: c.signature.toString("base64"),
  };
}

const HEX64 = /^[0-9a-f]{64}$/;
const INSTANT = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Reads checkpoint JSON (snake_case, or the camelCase of the RPC's JSON); a message naming the field otherwise. */
export function checkpointFromJson(json: unknown): Checkpoint | { readonly problem: string } {
  if (json === null || typeof json !== "object") return { problem: "a checkpoint is a JSON object" };
  const o = json as Record<string, unknown>;
  const pick = (snake: string, camel: string) => o[snake] ?? o[camel];
  const chainId = pick("chain_id", "chainId");
  const sequence = pick("sequence", "sequence");
  const hash = pick("hash", "hash");
  const signedAt = pick("signed_at", "signedAt");
  const keyId = pick("key_id", "keyId");
  const signature = pick("signature", "signature");
  if (typeof chainId !== "string" || !UUID.test(chainId)) return { problem: "chain_id: must be a lowercase UUID" };
  if ((typeof sequence !== "string" && typeof sequence !== "number") || !/^\d{1,19}$/.test(String(sequence))) {
    return { problem: "sequence: must be a non-negative integer" };
  }
  if (typeof hash !== "string" || !HEX64.test(hash)) return { problem: "hash: must be 64 lowercase hex digits" };
  if (typeof signedAt !== "string" || !INSTANT.test(normaliseInstant(signedAt))) {
    return { problem: "signed_at: must be an RFC 3339 UTC timestamp" };
  }
  if (typeof keyId !== "string" || keyId === "") return { problem: "key_id: is required" };
  if (typeof signature !== "string" || signature === "") return { problem: "signature: must be base64" };
  return {
    chainId,
    sequence: BigInt(sequence),
    hash,
    signedAt: normaliseInstant(signedAt),
    keyId,
    signature: Buffer.from(signature, "base64"),
  };
}

/** protobuf JSON prints Timestamps with 0, 3, 6 or 9 fractional digits; checkpoints sign six. */
function normaliseInstant(text: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(text);
  if (!m) return text;
  return `${m[1]}.${(m[2] ?? "").padEnd(9, "0").slice(0, 6)}Z`;
}

// ---- Verification ----

export type ChainProblem = "hash_mismatch" | "gap" | "reordered" | "missing_tail" | "bad_signature" | "checkpoint_mismatch";

export type ChainVerdict =
  | { readonly intact: true; readonly chainId: string; readonly baseSequence: bigint; readonly lastSequence: bigint; readonly eventsChecked: bigint }
  | {
      readonly intact: false;
      readonly chainId: string;
      readonly baseSequence: bigint;
      readonly lastSequence: bigint;
      readonly eventsChecked: bigint;
      readonly firstBadSequence: bigint;
      readonly problem: ChainProblem;
      readonly detail: string;
    };

type Broken = { readonly sequence: bigint; readonly problem: ChainProblem; readonly detail: string };

/**
 * Walks one chain in sequence order, one event at a time (memory stays
 * constant), and remembers the first problem. Expectations about the end (the
 * recorded head, a checkpoint) are checked by finish().
 */
export class ChainVerifier {
  private last: bigint;
  private lastHash: string;
  private checked = 0n;
  private broken: Broken | undefined;
  private checkpointSeen = false;

  constructor(
    readonly chainId: string,
    /** Where the chain starts: genesis (0, zeros) or a retention cut, which must be signed. */
    private readonly base: { readonly sequence: bigint; readonly hash: string; readonly cut?: Checkpoint | undefined },
    private readonly checkpoint: Checkpoint | undefined,
    /** The service's public key: checkpoints and retention cuts must carry its signature. */
    publicKey: KeyObject | undefined,
  ) {
    this.last = base.sequence;
    this.lastHash = base.hash;
    // A checkpoint that is not genuine proves nothing: refuse it before reading any event.
    if (checkpoint) {
      if (checkpoint.chainId !== chainId) this.fail(checkpoint.sequence, "bad_signature", `the checkpoint is for chain ${checkpoint.chainId}`);
      else if (!publicKey || !checkpointSignatureValid(checkpoint, publicKey)) {
        this.fail(checkpoint.sequence, "bad_signature", "the checkpoint's signature does not verify with this service's public key");
      }
    }
    const cut = base.cut;
    if (!this.broken && base.sequence > 0n) {
      if (!cut || cut.chainId !== chainId || cut.sequence !== base.sequence || cut.hash !== base.hash) {
        this.fail(base.sequence, "bad_signature", `the chain starts at ${base.sequence} without a signed retention cut there`);
      } else if (!publicKey || !checkpointSignatureValid(cut, publicKey)) {
        this.fail(base.sequence, "bad_signature", `the retention cut at ${base.sequence} is not signed by this service's key`);
      }
    }
  }

  get isBroken(): boolean {
    return this.broken !== undefined;
  }

  private fail(sequence: bigint, problem: ChainProblem, detail: string): void {
    this.broken ??= { sequence, problem, detail };
  }

  /** Feeds the next event; returns false once the chain is known to be broken (the rest need not be read). */
  push(e: ChainEvent): boolean {
    if (this.broken) return false;
    this.checked += 1n;
    const expected = this.last + 1n;
    if (e.chainId !== this.chainId) {
      this.fail(e.sequence, "reordered", `event ${e.sequence} belongs to chain ${e.chainId}`);
    } else if (e.sequence > expected) {
      this.fail(expected, "gap", `sequence ${expected} is missing (the next event is ${e.sequence})`);
    } else if (e.sequence < expected) {
      this.fail(e.sequence, "reordered", `sequence ${e.sequence} comes after ${this.last}`);
    } else if (chainHash(e.previousHash, e) !== e.hash) {
      this.fail(e.sequence, "hash_mismatch", `event ${e.sequence} does not hash to its stored hash: its content was changed`);
    } else if (e.previousHash !== this.lastHash) {
      this.fail(
        e.sequence,
        "reordered",
        `event ${e.sequence} does not follow event ${this.last}: its previous_hash is not ${this.last === this.base.sequence ? "the chain's base" : "that event's hash"}`,
      );
    } else if (this.checkpoint && e.sequence === this.checkpoint.sequence && e.hash !== this.checkpoint.hash) {
      this.fail(e.sequence, "checkpoint_mismatch", `event ${e.sequence} is not the event the checkpoint signed: the chain was rewritten`);
    }
    if (this.checkpoint && e.sequence === this.checkpoint.sequence) this.checkpointSeen = true;
    this.last = e.sequence;
    this.lastHash = e.hash;
    return this.broken === undefined;
  }

  /**
   * The verdict. `head` is where the chain says it ends (the database's chain
   * head, or none for a file).
   */
  finish(head: { readonly sequence: bigint; readonly hash: string } | undefined): ChainVerdict {
    const cp = this.checkpoint;
    if (!this.broken && cp) {
      if (cp.sequence > this.last) {
        this.fail(this.last + 1n, "missing_tail", `the chain ends at ${this.last}, the checkpoint signed ${cp.sequence}: newest events were removed`);
      } else if (cp.sequence > this.base.sequence && !this.checkpointSeen) {
        this.fail(cp.sequence, "gap", `event ${cp.sequence} the checkpoint signed is not in the chain`);
      } else if (cp.sequence === this.base.sequence && cp.hash !== this.base.hash) {
        this.fail(cp.sequence, "checkpoint_mismatch", `the chain's base ${cp.sequence} is not the event the checkpoint signed`);
      }
    }
    if (!this.broken && head) {
      if (head.sequence > this.last) {
        this.fail(this.last + 1n, "missing_tail", `the chain ends at ${this.last}, its head records ${head.sequence}: newest events were removed`);
      } else if (head.sequence < this.last || head.hash !== this.lastHash) {
        this.fail(this.last, "reordered", `the chain's recorded head (${head.sequence}) does not match its last event (${this.last})`);
      }
    }
    const common = { chainId: this.chainId, baseSequence: this.base.sequence, lastSequence: this.last, eventsChecked: this.checked };
    if (!this.broken) return { intact: true, ...common };
    return { intact: false, ...common, firstBadSequence: this.broken.sequence, problem: this.broken.problem, detail: this.broken.detail };
  }
}
