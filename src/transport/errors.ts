import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BackendTerminatedError,
  CheckIntegrityConstraintViolationError,
  ConnectionError,
  ForeignKeyIntegrityConstraintViolationError,
  NotFoundError as SlonikNotFoundError,
  StatementTimeoutError,
  UniqueIntegrityConstraintViolationError,
} from "slonik";
import { BadRequestSchema, BadRequest_FieldViolationSchema } from "../../gen/google/rpc/error_details_pb.js";
import { DomainError, InvalidArgumentError } from "../domain/errors.js";
import type { Logger } from "../logger.js";

const DOMAIN_CODES = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  permission_denied: Code.PermissionDenied,
} as const satisfies Record<DomainError["kind"], Code>;

// Node's socket errors and PostgreSQL's "cannot serve right now" states (class 57, 08).
const UNAVAILABLE_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EHOSTUNREACH"]);
const UNAVAILABLE_SQLSTATE = /^(08|57P0[1-3]|53300)/;
// Class 22, data exceptions: a value PostgreSQL cannot take (NUL characters,
// out-of-range numbers) that slipped past the edge checks. The client's input, not our fault.
const DATA_EXCEPTION_SQLSTATE = /^22/;
// The schema is missing or behind (e.g. `migrate down-all` under a running server):
// undefined table, type, function, column or schema. Readiness says so too.
const SCHEMA_MISSING_SQLSTATE = /^(42P01|42704|42883|42703|3F000)$/;

function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e: unknown = error; e !== undefined && e !== null && chain.length < 8; e = (e as { cause?: unknown }).cause) {
    chain.push(e);
  }
  return chain;
}

function isUnavailable(error: unknown): boolean {
  return causeChain(error).some((e) => {
    if (e instanceof ConnectionError || e instanceof BackendTerminatedError) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code !== "string") return false;
    return UNAVAILABLE_ERRNO.has(code) || UNAVAILABLE_SQLSTATE.test(code);
  }) || /Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
    causeChain(error).map((e) => (e instanceof Error ? e.message : "")).join("\n"),
  );
}

/** InvalidArgument with its field violations as `google.rpc.BadRequest` details (REST lists them as fieldViolations). */
export function invalidArgument(error: InvalidArgumentError): ConnectError {
  const details = [
    {
      desc: BadRequestSchema,
      value: create(BadRequestSchema, {
        fieldViolations: error.violations.map((v) => create(BadRequest_FieldViolationSchema, { field: v.field, description: v.description })),
      }),
    },
  ];
  return new ConnectError(error.message, Code.InvalidArgument, undefined, details);
}

/**
 * The one place errors become Connect codes. Clients see a domain message or a
 * generic one: never SQL, never a stack. Unexpected failures are logged with
 * their cause under a request id that the client also receives.
 */
export function toConnectError(error: unknown, logger: Logger, procedure: string, requestId: string, traceId?: string): ConnectError {
  if (error instanceof ConnectError) return error;
  // What an operator needs to find this call's log lines and trace.
  const reference = traceId ? `request id ${requestId}, trace id ${traceId}` : `request id ${requestId}`;
  // The client went away mid-stream (e.g. buf curl closing a reflection stream): not our failure.
  if ((error as { code?: unknown })?.code === "ERR_STREAM_PREMATURE_CLOSE") {
    logger.debug({ procedure, requestId }, "client closed the stream");
    return new ConnectError("the client closed the stream", Code.Canceled);
  }
  if (error instanceof InvalidArgumentError) return invalidArgument(error);
  if (error instanceof DomainError) return new ConnectError(error.message, DOMAIN_CODES[error.kind]);
  // The database is the last line of defence: a constraint the edge checks missed.
  if (error instanceof UniqueIntegrityConstraintViolationError) {
    return new ConnectError(`already exists (${error.constraint ?? "unique constraint"})`, Code.AlreadyExists);
  }
  if (error instanceof ForeignKeyIntegrityConstraintViolationError) {
    return new ConnectError(`a referenced resource does not exist (${error.constraint ?? "foreign key"})`, Code.FailedPrecondition);
  }
  if (error instanceof CheckIntegrityConstraintViolationError) {
    return new ConnectError(`invalid value (${error.constraint ?? "check constraint"})`, Code.InvalidArgument);
  }
  if (error instanceof SlonikNotFoundError) return new ConnectError("not found", Code.NotFound);
  if (causeChain(error).some((e) => DATA_EXCEPTION_SQLSTATE.test(String((e as { code?: unknown }).code ?? "")))) {
    logger.info({ err: error, procedure, requestId }, "input rejected by the database");
    return new ConnectError("invalid value: the input contains data that cannot be stored (e.g. a NUL character)", Code.InvalidArgument);
  }
  if (error instanceof StatementTimeoutError) {
    return new ConnectError("the database did not answer in time", Code.DeadlineExceeded);
  }
  if (causeChain(error).some((e) => SCHEMA_MISSING_SQLSTATE.test(String((e as { code?: unknown }).code ?? "")))) {
    logger.error({ procedure, requestId, sqlState: causeChain(error).map((e) => (e as { code?: unknown }).code).find((c) => typeof c === "string") }, "database schema missing or not current");
    return new ConnectError(`the database schema is not current, retry later (request id ${requestId})`, Code.Unavailable);
  }
  if (isUnavailable(error)) {
    logger.warn({ err: error, procedure, requestId }, "database unavailable");
    return new ConnectError(`the database is unavailable, retry later (${reference})`, Code.Unavailable);
  }
  logger.error({ err: error, procedure, requestId }, "unexpected error");
  return new ConnectError(`internal error (${reference})`, Code.Internal);
}
