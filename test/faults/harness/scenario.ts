import type { GengateProcess } from "../../helpers/process";
import { checkInvariants, unfinishedCount, type SettledReport } from "./invariants";
import { LoadDriver, type LoadOptions } from "./load";
import type { Deployment } from "./stack";
import { Watchers } from "./watchers";

/**
 * One fault scenario's moving parts: the load driver, the subscribers, and the api processes
 * both of them use (those still alive). `settle()` stops the load, waits for every accepted
 * generation to reach a final state (as its subscriber sees it), then for every row of the
 * database, and checks the invariants.
 */
export class Scenario {
  readonly load: LoadDriver;
  readonly watchers: Watchers;
  readonly started = Date.now();

  constructor(
    readonly deployment: Deployment,
    readonly apis: GengateProcess[],
    key: string,
    load: Partial<LoadOptions> = {},
    watcherClients = 2,
  ) {
    const targets = () => this.apis.filter(isAlive).map((p) => p.url);
    this.watchers = new Watchers({ targets, key, clients: watcherClients });
    this.load = new LoadDriver({
      targets,
      key,
      ...load,
      onAccepted: (id) => this.watchers.watch(id),
    });
  }

  start(): this {
    this.load.start();
    return this;
  }

  /**
   * Stops the load and waits for everything to settle; returns the report (and the
   * subscribers' final states) for the test's assertions.
   */
  async settle(timeoutMs = 60_000): Promise<SettledOutcome> {
    await this.load.stop();
    const deadline = Date.now() + timeoutMs;
    const finals = await this.watchers.finals(timeoutMs);
    // Rows no subscriber watches (created by a request whose answer was lost) have no event
    // to wait on: poll the database for them.
    while ((await unfinishedCount(this.deployment)) > 0) {
      if (Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const report = await checkInvariants(
      this.deployment,
      this.load.accepted.map((a) => a.id),
    );
    const statuses = new Map(
      (
        await this.deployment.query<{ id: string; status: string }>(
          `SELECT id, status FROM generations`,
        )
      ).map((r) => [r.id, r.status]),
    );
    const mismatched = [...finals].filter(([id, s]) => statuses.get(id) !== s);
    return {
      report,
      finals,
      mismatched,
      load: this.load.summary(),
      failures: this.load.failures(),
      seconds: (Date.now() - this.started) / 1000,
    };
  }

  async dispose(): Promise<void> {
    await this.load.stop();
    await this.watchers.dispose();
  }
}

export interface SettledOutcome {
  report: SettledReport;
  /** Each accepted generation's final state as its subscriber saw it. */
  finals: Map<string, string>;
  /** Subscribers whose final state is not the row's. */
  mismatched: Array<[string, string]>;
  load: Record<string, number>;
  failures: Array<{ api: string; kind: string; detail: string }>;
  seconds: number;
}

export function isAlive(p: GengateProcess): boolean {
  return p.proc.exitCode === null && p.proc.signalCode === null;
}

/** The first log line of `p` matching `pred` from now on (earlier ones are not counted). */
export function nextLog(
  p: GengateProcess,
  pred: (json: Record<string, any>) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<unknown> {
  const earlier = new Set(p.logs);
  return p.waitForLog((l) => l.json !== null && !earlier.has(l) && pred(l.json), {
    timeoutMs,
    what,
  });
}
