/** Latency samples in ms, bounded so that a long run cannot grow without limit. */
export class Latencies {
  private readonly samples: number[] = [];
  private seen = 0;

  constructor(private readonly max = 2_000_000) {}

  record(ms: number): void {
    this.seen++;
    if (this.samples.length < this.max) this.samples.push(ms);
    else {
      // Reservoir sampling keeps the percentiles honest past the bound.
      const slot = Math.floor(Math.random() * this.seen);
      if (slot < this.max) this.samples[slot] = ms;
    }
  }

  get count(): number {
    return this.seen;
  }

  /** The q-quantile (0..1) by nearest rank; NaN when empty. */
  quantile(q: number): number {
    if (this.samples.length === 0) return NaN;
    const sorted = [...this.samples].sort((a, b) => a - b);
    const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
    return sorted[rank]!;
  }

  summary(): { p50: number; p99: number; p100: number } {
    const sorted = [...this.samples].sort((a, b) => a - b);
    const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!);
    return { p50: at(0.5), p99: at(0.99), p100: at(1) };
  }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
