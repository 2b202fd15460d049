/** Percentiles and formatting of timings, the same for every scenario. */

export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of already sorted samples (q in 0..1). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    p50: percentile(s, 0.5),
    p90: percentile(s, 0.9),
    p99: percentile(s, 0.99),
    max: s.length ? s[s.length - 1]! : NaN,
    mean: s.length ? sum / s.length : NaN,
  };
}

/** Milliseconds, to a precision that suits their size. */
export function ms(v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  if (Math.abs(v) < 10) return `${v.toFixed(2)} ms`;
  if (Math.abs(v) < 100) return `${v.toFixed(1)} ms`;
  return `${Math.round(v)} ms`;
}

export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function kb(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KB`;
}

export function ratio(a: number, b: number, digits = 2): string {
  return b ? `${(a / b).toFixed(digits)}×` : "n/a";
}

export function pct(part: number, whole: number, digits = 1): string {
  return whole ? `${((100 * part) / whole).toFixed(digits)}%` : "n/a";
}

export function int(v: number): string {
  return Math.round(v).toLocaleString("en-US");
}

/** Runs `task` for 0..n-1, at most `concurrency` at once; results in index order. */
export async function pool<T>(
  n: number,
  concurrency: number,
  task: (i: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) {
        const i = next++;
        results[i] = await task(i);
      }
    }),
  );
  return results;
}

export const sleep = (msecs: number) => new Promise((resolve) => setTimeout(resolve, msecs));
