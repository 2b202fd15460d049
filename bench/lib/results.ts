/**
 * Where a run's numbers go: `bench/results/<date>-<name>.md` per scenario (machine, setup,
 * table, notes), and the summary table, which the run writes to
 * `bench/results/<date>-summary.md` and into `bench/README.md` between the markers
 * `<!-- bench:summary:start -->` and `<!-- bench:summary:end -->`. A run of some scenarios
 * (`--only`) replaces their rows and keeps the others'.
 */
import fs from "node:fs";
import path from "node:path";
import type { BenchContext, ScenarioReport } from "./scenario";

const REPO = path.resolve(__dirname, "../../..");
export const RESULTS_DIR = process.env.BENCH_RESULTS_DIR ?? path.join(REPO, "bench/results");
export const README = process.env.BENCH_README ?? path.join(REPO, "bench/README.md");
const START = "<!-- bench:summary:start -->";
const END = "<!-- bench:summary:end -->";

export function writeReport(ctx: BenchContext, name: string, r: ScenarioReport): string {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${ctx.date}-${name}.md`);
  const hasGoals = r.rows.some((m) => m.goal);
  const table = [
    hasGoals ? "| measure | result | goal |" : "| measure | result |",
    hasGoals ? "|---|---|---|" : "|---|---|",
    ...r.rows.map((m) =>
      hasGoals
        ? `| ${cell(m.measure)} | ${cell(m.result)} | ${cell(m.goal ?? "")} |`
        : `| ${cell(m.measure)} | ${cell(m.result)} |`,
    ),
  ].join("\n");
  const text = [
    `# ${r.title}`,
    "",
    `\`npm run bench -- --only=${name}\`, one run on ${ctx.date}. Machine:`,
    "",
    ctx.machine.markdown,
    "",
    r.setup.trim(),
    "",
    table,
    "",
    ...(r.notes?.length ? ["Notes:", "", ...r.notes.map((n) => `- ${n}`), ""] : []),
  ].join("\n");
  fs.writeFileSync(file, text);
  return file;
}

export interface SummaryRow {
  name: string;
  report: ScenarioReport;
  file: string;
}

/** The summary table's rows for these scenarios, in the order given. */
function rowsOf(rows: SummaryRow[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const { name, report, file } of rows) {
    const verdict = report.met === undefined ? "" : report.met ? "met" : "**missed**";
    out.set(
      name,
      `| \`${name}\` | ${cell(report.headline)} | ${cell(report.goal)} | ${verdict} | [${path.basename(file)}](results/${path.basename(file)}) |`,
    );
  }
  return out;
}

const HEADER = [
  "| scenario | result (this run, with its ceiling) | goal | | file |",
  "| --- | --- | --- | --- | --- |",
];

/** Writes `<date>-summary.md` and regenerates the README's table; returns the summary's path. */
export function writeSummary(ctx: BenchContext, ran: SummaryRow[], order: string[]): string {
  const fresh = rowsOf(ran);
  const file = path.join(RESULTS_DIR, `${ctx.date}-summary.md`);
  fs.writeFileSync(
    file,
    [
      `# Benchmark summary, ${ctx.date}`,
      "",
      ctx.machine.markdown,
      "",
      ...HEADER,
      ...[...fresh.values()],
      "",
    ].join("\n"),
  );

  if (fs.existsSync(README)) {
    const readme = fs.readFileSync(README, "utf8");
    const a = readme.indexOf(START);
    const b = readme.indexOf(END);
    if (a >= 0 && b > a) {
      const kept = new Map<string, string>();
      for (const line of readme.slice(a + START.length, b).split("\n")) {
        const m = /^\| `([^`]+)` \|/.exec(line);
        if (m) kept.set(m[1]!, line);
      }
      for (const [name, line] of fresh) kept.set(name, line);
      const names = [
        ...order.filter((n) => kept.has(n)),
        ...[...kept.keys()].filter((n) => !order.includes(n)),
      ];
      const table = [...HEADER, ...names.map((n) => kept.get(n)!)].join("\n");
      fs.writeFileSync(
        README,
        `${readme.slice(0, a + START.length)}\n${table}\n${readme.slice(b)}`,
      );
    }
  }
  return file;
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\n/g, " ");
}
