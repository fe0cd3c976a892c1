/**
 * Domain failures, free of any transport. The transport layer maps each kind to
 * its Connect code; anything that is not a DomainError is an infrastructure
 * failure and is never shown to clients verbatim.
 */
export type FieldViolation = { readonly field: string; readonly description: string };

export abstract class DomainError extends Error {
  abstract readonly kind: "invalid_argument" | "not_found" | "already_exists" | "failed_precondition" | "permission_denied";
}

export class InvalidArgumentError extends DomainError {
  override readonly name = "InvalidArgumentError";
  readonly kind = "invalid_argument";
  constructor(readonly violations: readonly FieldViolation[]) {
    super(violations.map((v) => `${v.field}: ${v.description}`).join("; "));
  }

  static field(field: string, description: string): InvalidArgumentError {
    return new InvalidArgumentError([{ field, description }]);
  }
}

export class NotFoundError extends DomainError {
  override readonly name = "NotFoundError";
  readonly kind = "not_found";
  constructor(resource: string, key: string) {
    super(`${resource} ${key} not found`);
  }
}

export class AlreadyExistsError extends DomainError {
  override readonly name = "AlreadyExistsError";
  readonly kind = "already_exists";
  constructor(
    resource: string,
    readonly field: string,
    value: string,
  ) {
    super(`${resource} with ${field} "${value}" already exists`);
  }
}

export class FailedPreconditionError extends DomainError {
  override readonly name = "FailedPreconditionError";
  readonly kind = "failed_precondition";
}

/** What the audit event of a denied call says beyond the call itself (see the auth interceptor, which writes it). */
export type DenialAudit = {
  /** The permission the caller lacked, when it is not the RPC's own. */
  readonly permission?: string;
  readonly target?: { readonly id: string; readonly name: string; readonly type: string };
  /** Added to the event's fields: what the call would have changed. */
  readonly fields?: Readonly<Record<string, string | number | boolean | readonly string[]>>;
};

/**
 * The caller may call the RPC, but not do this particular thing with it (e.g. grant
 * more than it holds). Thrown by a handler of a mutating RPC, it is audited as a
 * denied call by the auth interceptor, as the interceptor's own denials are.
 */
export class PermissionDeniedError extends DomainError {
  override readonly name = "PermissionDeniedError";
  readonly kind = "permission_denied";
  constructor(
    message: string,
    readonly audit: DenialAudit = {},
  ) {
    super(message);
  }
}
