import { timestampDate, type FieldMask, type Timestamp } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError, type FieldViolation } from "../domain/errors.js";
import { isUuid } from "../domain/ids.js";
import { slugProblem } from "../domain/tenant.js";

/**
 * How many of a request's problems an error names; the rest are counted. A list of 800,000 bad
 * scopes, or a batch of 1,000 bad events, would otherwise answer with an error larger than the
 * request, more than a gRPC trailer carries and more than anyone reads.
 */
export const MAX_LISTED_VIOLATIONS = 50;

/**
 * Edge checks that name the offending field. They mirror the schema's
 * constraints with friendlier messages; the database stays the last line.
 */
export class Violations {
  private readonly list: FieldViolation[] = [];
  private readonly listedFields = new Set<string>();
  private omitted = 0;
  private omittedField: string | undefined;

  /**
   * Past the cap, a field of the request not named yet (by its top-level name: `expires_at`
   * after 50 bad `scopes`) is still named once, so a form can show every field's problem; the
   * rest are counted under the field of the first of them. `omittedField`: count them all
   * there instead (a batch, whose every violation is under `events`).
   */
  constructor(private readonly options: { readonly omittedField?: string } = {}) {}

  add(field: string, description: string): this {
    const topLevel = field.split(/[.[]/, 1)[0]!;
    const unnamed = this.options.omittedField === undefined && !this.listedFields.has(topLevel);
    if (this.list.length < MAX_LISTED_VIOLATIONS || unnamed) {
      this.list.push({ field, description });
      this.listedFields.add(topLevel);
    } else {
      this.omitted += 1;
      this.omittedField ??= this.options.omittedField ?? field;
    }
    return this;
  }

  /** Records `description` for `field` unless `ok`. */
  check(ok: boolean, field: string, description: string): this {
    return ok ? this : this.add(field, description);
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  throwIfAny(): void {
    if (this.list.length === 0) return;
    const unlisted = this.omitted > 0 ? [{ field: this.omittedField!, description: `${this.omitted} more violations not listed` }] : [];
    throw new InvalidArgumentError([...this.list, ...unlisted]);
  }
}

export function requireUuid(field: string, value: string): string {
  if (value === "") throw InvalidArgumentError.field(field, "is required");
  if (!isUuid(value)) throw InvalidArgumentError.field(field, "must be a UUID");
  return value.toLowerCase();
}

export function requireSlug(field: string, value: string): string {
  if (value === "") throw InvalidArgumentError.field(field, "is required");
  const problem = slugProblem(value);
  if (problem) throw InvalidArgumentError.field(field, problem);
  return value;
}

export function checkSlug(v: Violations, field: string, value: string): void {
  if (value === "") v.add(field, "is required");
  else {
    const problem = slugProblem(value);
    if (problem) v.add(field, problem);
  }
}

export function checkUuid(v: Violations, field: string, value: string, required = true): void {
  if (value === "") {
    if (required) v.add(field, "is required");
  } else if (!isUuid(value)) v.add(field, "must be a UUID");
}

/** Mirrors the *_name_length CHECKs: 1-200 characters after trimming. */
export function checkName(v: Violations, field: string, value: string): void {
  const trimmed = value.trim();
  if (trimmed === "") v.add(field, "is required");
  else if (trimmed.length > 200) v.add(field, "must be at most 200 characters");
}

const METADATA_KEY = /^[a-zA-Z0-9_.-]{1,63}$/;

export function checkMetadata(v: Violations, field: string, metadata: Readonly<Record<string, string>>): void {
  const entries = Object.entries(metadata);
  if (entries.length > 64) v.add(field, "may have at most 64 keys");
  for (const [key, value] of entries) {
    if (!METADATA_KEY.test(key)) v.add(`${field}.${key}`, "keys are 1-63 of [a-zA-Z0-9_.-]");
    if (value.length > 1024) v.add(`${field}.${key}`, "values are at most 1024 characters");
  }
}

export function checkExternalId(v: Violations, field: string, value: string): void {
  if (value.length > 200) v.add(field, "must be at most 200 characters");
}

/**
 * The paths of an update mask, checked against what may be updated. Over REST
 * the mask defaults to the body's fields (see transport/rest.ts).
 */
export function maskPaths(
  mask: FieldMask | undefined,
  updatable: readonly string[],
  immutable: Readonly<Record<string, string>> = {},
): string[] {
  const paths = mask?.paths ?? [];
  const v = new Violations();
  if (paths.length === 0) v.add("update_mask", `is required: name the fields to update (${updatable.join(", ")})`);
  for (const path of paths) {
    if (Object.hasOwn(immutable, path)) v.add("update_mask", immutable[path]!);
    else if (!updatable.includes(path)) v.add("update_mask", `"${path}" cannot be updated; updatable: ${updatable.join(", ")}`);
  }
  v.throwIfAny();
  return [...new Set(paths)];
}

/** Optional timestamp that, when set, must lie after `now`. */
export function checkFuture(v: Violations, field: string, value: Timestamp | undefined, now: Date): Date | null {
  if (!value) return null;
  const date = timestampDate(value);
  if (Number.isNaN(date.getTime())) v.add(field, "is not a valid timestamp");
  else if (date.getTime() <= now.getTime()) v.add(field, "must be in the future");
  return date;
}
