import type { SettledOutcome } from "./scenario";

/**
 * The invariants, the subscribers' view and the load driver's record, reported together so a
 * failure shows the whole picture.
 */
export function expectClean(out: SettledOutcome, opts: { killedApi?: string } = {}): void {
  // Requests cut off by the death of the api they went to are the client's to retry; any
  // other request must have been answered, and answered clearly.
  const failures = out.failures.filter((f) => f.api !== opts.killedApi);
  const dropped = Object.entries(out.load).filter(([k]) => k === "dropped");
  const picture = {
    seconds: out.seconds,
    generations: out.report.byStatus,
    load: out.load,
    failures: failures.slice(0, 10),
    violations: out.report.violations,
    mismatched: out.mismatched.slice(0, 10),
  };
  expect({ ...picture, ok: true }).toEqual({
    ...picture,
    ok:
      failures.length === 0 &&
      (opts.killedApi !== undefined || dropped.length === 0) &&
      out.mismatched.length === 0 &&
      Object.values(out.report.violations).every((v) => v.length === 0),
  });
  expect(out.finals.size).toBeGreaterThan(0);
}

/** One line per scenario in the suite's output: what the load and the generations came to. */
export function logOutcome(name: string, out: SettledOutcome): void {
  console.log(
    `${name}: ${out.seconds.toFixed(1)} s, generations ${JSON.stringify(out.report.byStatus)}, ` +
      `requests ${JSON.stringify(out.load)}`,
  );
}
