import { describe, expect, it } from "vitest";
import { inexactInteger } from "../../src/transport/json-numbers.js";

describe("integer literals a double cannot hold", () => {
  it.each([
    ['{"seats":9007199254740993}', "9007199254740993"],
    ['{"seats":-9007199254740993}', "-9007199254740993"],
    ['[1,2,{"a":[12345678901234567891]}]', "12345678901234567891"],
    // After a junk member that overflows a double: the scan goes on.
    [`{"aaa":${"9".repeat(400)},"seats":1}`, "9".repeat(40)],
    // A string with escaped quotes and backslashes before the number.
    ['{"a":"x\\"y\\\\","b":9007199254740993}', "9007199254740993"],
  ])("%s → %s", (text, found) => {
    expect(inexactInteger(text)).toBe(found);
  });

  it.each([
    '{"seats":9007199254740992}', // 2^53: a double holds it
    '{"seats":"9007199254740993"}', // a string
    '{"note":"order 90071992547409939007199254740993"}',
    '{"a":"\\\\","b":"9007199254740993"}', // an escaped backslash ends before the closing quote
    '{"ratio":9007199254740993.5,"big":6.02e23}', // doubles by intent
    '{"a":1,"b":-2,"c":1e5}',
    '{"a":"unterminated 9007199254740993',
  ])("%s → nothing", (text) => {
    expect(inexactInteger(text)).toBeUndefined();
  });

  it("reads a 4 MiB body of numbers, or of strings full of escapes, through to the end", () => {
    // (How long it takes is for the bench to say, not a test: a small multiple of JSON.parse's time.)
    const numbers = `{"slug":"1234567890123456","x":[${Array(2 * 1024 * 1024 - 20).fill(0).join(",")},9007199254740993]}`;
    const strings = `{"x":[${Array(100_000).fill('"a\\\\\\"b 9007199254740993 c"').join(",")}],"y":9007199254740993}`;
    expect(inexactInteger(numbers)).toBe("9007199254740993");
    expect(inexactInteger(strings)).toBe("9007199254740993");
  });
});
