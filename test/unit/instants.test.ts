import { describe, expect, it } from "vitest";
import { instantFromEpoch, instantToEpoch, type Instant } from "../../src/domain/audit-query.js";

// What instantToEpoch must always agree with: the calendar as Date.parse reads it.
const byDateParse = (instant: string) => BigInt(Date.parse(`${instant.slice(0, 19)}Z`) / 1000);
const pad = (n: number, width: number) => String(n).padStart(width, "0");

describe("instants as seconds and nanoseconds since the epoch", () => {
  it("agree with Date.parse on every kind of day from year 1 to 9999, leap days and month ends included", () => {
    const checked: string[] = [];
    for (let year = 1; year <= 9999; year += year < 1600 ? 97 : year < 2500 ? 1 : 89) {
      for (const [month, day] of [[1, 1], [2, 28], [2, 29], [3, 1], [4, 30], [6, 15], [12, 31]] as const) {
        const [hour, minute, second] = [(year * 7) % 24, (year * 13) % 60, (year * 17) % 60];
        const instant = `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}.${pad((year * 7919) % 1_000_000, 6)}Z`;
        // 29 February of a common year is no day (Date.parse reads it as 1 March): below.
        if (new Date(Date.parse(instant)).getUTCDate() !== day) continue;
        const { seconds, nanos } = instantToEpoch(instant as Instant);
        expect(seconds, instant).toBe(byDateParse(instant));
        expect(nanos, instant).toBe(((year * 7919) % 1_000_000) * 1000);
        expect(instantFromEpoch(seconds, nanos), instant).toBe(instant);
        checked.push(instant);
      }
    }
    expect(checked.length).toBeGreaterThan(5_000);
    expect(instantToEpoch("1970-01-01T00:00:00.000000Z" as Instant)).toEqual({ seconds: 0n, nanos: 0 });
    expect(instantToEpoch("1969-12-31T23:59:59.999999Z" as Instant)).toEqual({ seconds: -1n, nanos: 999_999_000 });
    expect(instantToEpoch("2000-02-29T12:00:00.000001Z" as Instant)).toEqual({ seconds: 951_825_600n, nanos: 1_000 });
  });

  it("read a field out of range as Date.parse does, and refuse what is not an instant", () => {
    for (const odd of ["2023-02-29T00:00:00.000000Z", "2024-13-01T00:00:00.000000Z", "2024-01-01T24:00:00.000000Z", "2024-01-01T23:60:00.000000Z"]) {
      const expected = Number.isNaN(Date.parse(`${odd.slice(0, 19)}Z`)) ? "throws" : byDateParse(odd);
      const got = (() => {
        try {
          return instantToEpoch(odd as Instant).seconds;
        } catch {
          return "throws";
        }
      })();
      expect(got, odd).toBe(expected);
    }
    expect(() => instantToEpoch("2024-01-01T00:00:00Z" as Instant)).toThrow(TypeError);
    expect(() => instantToEpoch("2024-01-01 00:00:00.000000Z" as Instant)).toThrow(TypeError);
  });
});
