import { UniqueIntegrityConstraintViolationError } from "slonik";

/**
 * Turns a unique-constraint violation into the domain error the caller names for
 * that constraint (e.g. tenants_slug_key → AlreadyExists on "slug"). The edge
 * cannot check uniqueness without a race; the database decides, and this keeps
 * its answer in the caller's words.
 */
export async function translateUniqueViolations<T>(
  work: () => Promise<T>,
  byConstraint: Readonly<Record<string, () => Error>>,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof UniqueIntegrityConstraintViolationError && error.constraint && byConstraint[error.constraint]) {
      throw byConstraint[error.constraint]!();
    }
    throw error;
  }
}
