import { InvalidArgumentError } from "../domain/errors.js";
import { isUuid } from "../domain/ids.js";
import { slugProblem } from "../domain/tenant.js";

/** Edge checks that name the offending field; they mirror the schema's constraints. */
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
