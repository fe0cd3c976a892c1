const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;

const isDigit = (c: number) => c >= ZERO && c <= NINE;
// What may follow the integer part of a JSON number: digits, . e E + -
const inNumber = (c: number) => isDigit(c) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === MINUS;

/**
 * The first integer literal in a JSON text that a double cannot hold exactly
 * (JSON.parse reads 9007199254740993 as …992, and an int64 field would store
 * that without a word), or undefined. One pass over the text that skips strings;
 * only literals of 16 digits or more are looked at, and the first one found ends
 * it. For text that is not JSON either answer will do: its parse fails anyway.
 *
 * Only integer literals: a number written with a fraction or an exponent is a
 * double by intent (a Struct's numbers are doubles), and rounds as doubles do.
 */
export function inexactInteger(text: string): string | undefined {
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // To the closing quote: the next one not escaped by an odd run of backslashes.
      let from = i + 1;
      for (;;) {
        const q = text.indexOf('"', from);
        if (q < 0) return undefined;
        let slashes = 0;
        for (let b = q - 1; b > i && text.charCodeAt(b) === BACKSLASH; b--) slashes++;
        from = q + 1;
        if (slashes % 2 === 0) break;
      }
      i = from;
      continue;
    }
    if (c === MINUS || isDigit(c)) {
      const start = i;
      i++;
      while (i < n && isDigit(text.charCodeAt(i))) i++;
      const next = i < n ? text.charCodeAt(i) : 0;
      // A fraction or an exponent: a double; skip the rest of the token.
      if (next === 0x2e || next === 0x65 || next === 0x45) {
        while (i < n && inNumber(text.charCodeAt(i))) i++;
        continue;
      }
      const digits = i - start - (c === MINUS ? 1 : 0);
      if (digits >= 16 && !exact(text.slice(start, i))) return text.slice(start, Math.min(i, start + 40));
      continue;
    }
    i++;
  }
  return undefined;
}

function exact(literal: string): boolean {
  const value = Number(literal);
  if (Number.isNaN(value)) return true; // not a number JSON allows: the parse refuses it
  if (!Number.isFinite(value)) return false;
  if (Number.isSafeInteger(value)) return true;
  // A finite double has at most 309 integer digits; BigInt of this literal is cheap.
  return BigInt(literal) === BigInt(value);
}

export const inexactIntegerMessage = (literal: string) =>
  `the number ${literal} cannot be read exactly (JSON numbers are doubles beyond 2^53): send int64 values as strings`;
