/**
 * What a scenario is: a function of the run's context that measures, in this run, what it is
 * about and its ceiling, and reports both. `bench/run.ts` lists them; `lib/results.ts` writes
 * the report to `bench/results/<date>-<name>.md` and a row of the summary table.
 */

export interface Machine {
  /** One line: cores, CPU model, memory, OS, Node, Postgres, Redis, load. */
  line: string;
  /** The same, a bullet per item, for the results files. */
  markdown: string;
}

export interface BenchContext {
  pgAdminUrl: string;
  redisUrl: string;
  /** UTC date of the run, YYYY-MM-DD: the results files' prefix. */
  date: string;
  machine: Machine;
  /**
   * `--cpu-prof=api,worker`: these gengate roles run under `node --cpu-prof`, their profiles
   * written into `dir` when they exit.
   */
  cpuProf: { roles: Set<string>; dir: string } | null;
  /** A progress line on stdout, prefixed with the scenario's name. */
  log(line: string): void;
}

export interface Measure {
  measure: string;
  result: string;
  goal?: string;
}

export interface ScenarioReport {
  /** Heading of the results file. */
  title: string;
  /** What ran and how (processes, settings, load), Markdown paragraphs. */
  setup: string;
  rows: Measure[];
  notes?: string[];
  /** The summary table's cell: the numbers that matter, with their ceiling or ratio. */
  headline: string;
  /** The goals, as the summary table states them ("" when the scenario has none). */
  goal: string;
  /** Whether every goal was met in this run; undefined when there is no goal. */
  met?: boolean;
}

export type Scenario = (ctx: BenchContext) => Promise<ScenarioReport>;

export interface ScenarioEntry {
  /** `--only=<name>`, and the results file's suffix. */
  name: string;
  /** Part of `npm run bench` without `--only` (false: only when named). */
  inFullRun: boolean;
  /** Loaded when it runs, so one scenario's imports never slow another's start. */
  load: () => Promise<Scenario>;
}
