import { describe, expect, it } from "vitest";
import { slugProblem } from "../../src/domain/tenant.js";

describe("slug rule (mirrors tenants_slug_format)", () => {
  it.each(["abc", "acme", "a-b-c", "123", "a".repeat(63)])("accepts %j", (slug) => {
    expect(slugProblem(slug)).toBeUndefined();
  });

  it.each([
    ["ab", "must be 3 to 63 characters long"],
    ["a".repeat(64), "must be 3 to 63 characters long"],
    ["Acme", "may contain only lowercase letters, digits and '-'"],
    ["ac_me", "may contain only lowercase letters, digits and '-'"],
    ["-acme", "must start and end with a letter or digit"],
    ["acme-", "must start and end with a letter or digit"],
  ])("rejects %j: %s", (slug, problem) => {
    expect(slugProblem(slug)).toBe(problem);
  });
});
