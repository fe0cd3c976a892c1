import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

export type Cell = string | number | undefined;

type Entry =
  | { kind: "section"; title: string }
  | { kind: "note"; text: string }
  | { kind: "not-measured"; what: string; why: string }
  | { kind: "table"; title: string; columns: string[]; rows: Cell[][] };

/**
 * Everything a section prints goes through here: to stdout as it happens, and at
 * the end as one JSON file (BENCH_OUTPUT, default .bench/latest.json) for the lead.
 */
export class Report {
  private readonly entries: { section: string; entry: Entry }[] = [];
  private current = "";

  constructor(private readonly write: (line: string) => void = (line) => console.log(line)) {}

  section(title: string): void {
    this.current = title;
    this.entries.push({ section: title, entry: { kind: "section", title } });
    this.write(`\n== ${title} ==`);
  }

  note(text: string): void {
    this.entries.push({ section: this.current, entry: { kind: "note", text } });
    this.write(`  ${text}`);
  }

  /** A figure we could not take: said plainly, never replaced by a made-up number. */
  notMeasured(what: string, why: string): void {
    this.entries.push({ section: this.current, entry: { kind: "not-measured", what, why } });
    this.write(`  not measured: ${what} (${why})`);
  }

  table(title: string, columns: string[], rows: Cell[][]): void {
    this.entries.push({ section: this.current, entry: { kind: "table", title, columns, rows } });
    this.write(`  ${title}`);
    const text = [columns, ...rows].map((row) => row.map((cell) => (cell === undefined ? "n/a" : String(cell))));
    const widths = columns.map((_, i) => Math.max(...text.map((row) => row[i]?.length ?? 0)));
    for (const [index, row] of text.entries()) {
      this.write("    " + row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "));
      if (index === 0) this.write("    " + widths.map((w) => "-".repeat(w)).join("  "));
    }
  }

  async save(path: string, meta: Record<string, unknown>): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, JSON.stringify({ ...meta, entries: this.entries }, null, 2) + "\n");
  }
}

export const fmt = {
  int: (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? undefined : Math.round(n).toLocaleString("en-US")),
  ms: (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? undefined : n < 10 ? n.toFixed(2) : n.toFixed(1)),
  mb: (bytes: number | undefined) => (bytes === undefined ? undefined : (bytes / 2 ** 20).toFixed(0)),
  /** a / b as "0.42×"; for costs (time, CPU, memory) a ratio above 1 is worse. */
  ratio: (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? undefined : `${(a / b).toFixed(2)}×`,
};
