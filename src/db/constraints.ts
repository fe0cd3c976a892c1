import { CheckIntegrityConstraintViolationError, UniqueIntegrityConstraintViolationError } from "slonik";

type ByConstraint = Readonly<Record<string, () => Error>>;

/**
 * Turns a unique-constraint violation into the domain error the caller names for
 * that constraint (e.g. tenants_slug_key → AlreadyExists on "slug"). The edge
 * cannot check uniqueness without a race; the database decides, and this keeps
 * its answer in the caller's words.
 */
export function translateUniqueViolations<T>(work: () => Promise<T>, byConstraint: ByConstraint): Promise<T> {
  return translate(UniqueIntegrityConstraintViolationError, work, byConstraint);
}

/**
 * The same for CHECK constraints the service checks first with the same figure: should the two
 * ever disagree, the caller still hears which rule it broke, not Internal.
 */
export function translateCheckViolations<T>(work: () => Promise<T>, byConstraint: ByConstraint): Promise<T> {
  return translate(CheckIntegrityConstraintViolationError, work, byConstraint);
}

async function translate<T>(
  kind: typeof UniqueIntegrityConstraintViolationError | typeof CheckIntegrityConstraintViolationError,
  work: () => Promise<T>,
  byConstraint: ByConstraint,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof kind && error.constraint && byConstraint[error.constraint]) throw byConstraint[error.constraint]!();
    throw error;
  }
}
