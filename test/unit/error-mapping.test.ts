import { Writable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../../src/domain/errors.js";
import { createLogger } from "../../src/logger.js";
import { toConnectError } from "../../src/transport/errors.js";

function capture() {
  const lines: string[] = [];
  const logger = createLogger("debug", new Writable({ write: (chunk, _e, cb) => (lines.push(String(chunk)), cb()) }));
  return { logger, text: () => lines.join("") };
}

const map = (error: unknown, logger = capture().logger) => toConnectError(error, logger, "svc/Method", "req-1");

describe("errors become Connect codes in one place", () => {
  it.each([
    [InvalidArgumentError.field("slug", "is required"), Code.InvalidArgument],
    [new NotFoundError("tenant", "x"), Code.NotFound],
    [new AlreadyExistsError("tenant", "slug", "x"), Code.AlreadyExists],
    [new FailedPreconditionError("archived"), Code.FailedPrecondition],
    [new PermissionDeniedError("no"), Code.PermissionDenied],
  ])("maps the domain error %s", (error, code) => {
    expect(map(error).code).toBe(code);
  });

  it("passes a ConnectError through unchanged", () => {
    const error = new ConnectError("slow down", Code.ResourceExhausted);
    expect(map(error)).toBe(error);
  });

  it("answers anything unexpected as Internal with the request id, logging the cause but telling the client nothing of it", () => {
    const { logger, text } = capture();
    const mapped = map(Object.assign(new Error('column "x" is ambiguous'), { code: "42702" }), logger);
    expect(mapped.code).toBe(Code.Internal);
    expect(mapped.rawMessage).toBe("internal error (request id req-1)");
    expect(text()).toContain('column \\"x\\" is ambiguous');
  });

  it("answers a missing or outdated schema (undefined table, type, column) as Unavailable, naming nothing of it", () => {
    const { logger } = capture();
    for (const code of ["42P01", "42704", "42703", "3F000"]) {
      const mapped = map(Object.assign(new Error('relation "tenants" does not exist'), { code }), logger);
      expect(mapped.code, code).toBe(Code.Unavailable);
      expect(mapped.rawMessage).not.toMatch(/relation|tenants/);
    }
  });

  it("names the trace id next to the request id when the call is traced, so one id finds the trace and the logs", () => {
    const { logger } = capture();
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const internal = toConnectError(new Error("boom"), logger, "svc/Method", "req-1", traceId);
    expect(internal.rawMessage).toBe(`internal error (request id req-1, trace id ${traceId})`);
    const down = toConnectError(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), logger, "svc/Method", "req-1", traceId);
    expect(down.rawMessage).toContain(`(request id req-1, trace id ${traceId})`);
  });

  it("answers a value PostgreSQL cannot store (SQLSTATE class 22) as InvalidArgument", () => {
    const mapped = map(Object.assign(new Error("invalid byte sequence for encoding UTF8: 0x00"), { code: "22021" }));
    expect(mapped.code).toBe(Code.InvalidArgument);
    expect(mapped.rawMessage).not.toContain("0x00");
  });

  it("answers a lost database connection as Unavailable", () => {
    expect(map(Object.assign(new Error("connect ECONNREFUSED 10.0.0.5:5432"), { code: "ECONNREFUSED" })).code).toBe(Code.Unavailable);
    expect(map(Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" })).code).toBe(Code.Unavailable);
  });

  it("answers a client that closed its stream as Canceled, without an error log", () => {
    const { logger, text } = capture();
    const mapped = map(Object.assign(new Error("Premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" }), logger);
    expect(mapped.code).toBe(Code.Canceled);
    expect(text()).not.toContain('"level":50');
  });
});
