import "uplot/dist/uPlot.min.css";
import "./dashboard.css";
import uPlot from "uplot";
import type { Client } from "graphql-ws";
import { byId, el, remembered, request, socket } from "./api";

/**
 * The operators' dashboard: provider circuits (providerHealth, then providerHealthChanged),
 * queue and in-flight counts, cache hit rate, spend / latency / error-rate series
 * (operatorStats) and alerts (alerts, then alertRaised). Needs an ADMIN key.
 */

interface Health {
  provider: string;
  circuit: "CLOSED" | "OPEN" | "HALF_OPEN";
  successRate: number;
  requests: number;
  failures: number;
  p50LatencyMs: number | null;
  p95LatencyMs: number | null;
  lastError: string | null;
}
interface Alert {
  id: string;
  kind: string;
  severity: string;
  message: string;
  createdAt: string;
}
interface Bucket {
  start: string;
  spendUsd: number;
  errorRate: number | null;
  p50LatencyMs: number | null;
  p95LatencyMs: number | null;
}
interface Stats {
  queued: number;
  processing: number;
  cacheHitRate: number;
  errorRate: number;
  spendUsd: number;
  series: Bucket[];
}

const HEALTH_FIELDS =
  "provider circuit successRate requests failures p50LatencyMs p95LatencyMs lastError";
const ALERT_FIELDS = "id kind severity message createdAt";
const REFRESH_MS = 10_000;

const keyStore = remembered("dashboard-key");
const keyInput = byId<HTMLInputElement>("key");
keyInput.value = keyStore.get();

const health = new Map<string, Health>();
let client: Client | undefined;
let timer: ReturnType<typeof setInterval> | undefined;
const charts: uPlot[] = [];

byId<HTMLFormElement>("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  keyStore.set(keyInput.value.trim());
  void connect();
});
for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="window"]')) {
  radio.addEventListener("change", () => void refreshStats());
}
if (keyInput.value) void connect();

function key(): string {
  return keyInput.value.trim();
}

async function connect(): Promise<void> {
  showError(null);
  await client?.dispose();
  clearInterval(timer);
  try {
    const data = await request<{ providerHealth: Health[]; alerts: Alert[] }>(
      key(),
      `{ providerHealth { ${HEALTH_FIELDS} } alerts(first: 20) { ${ALERT_FIELDS} } }`,
    );
    health.clear();
    for (const h of data.providerHealth) health.set(h.provider, h);
    renderHealth();
    byId("alerts").replaceChildren(...data.alerts.map(alertItem));
    await refreshStats();
  } catch (err) {
    showError(err instanceof Error ? err.message : String(err));
    return;
  }
  const status = byId("connection");
  client = socket(key());
  client.on("connected", () => {
    status.textContent = "live";
    status.dataset.state = "open";
  });
  client.on("closed", () => {
    status.textContent = "reconnecting…";
    status.dataset.state = "closed";
  });
  client.subscribe<{ providerHealthChanged: Health }>(
    { query: `subscription { providerHealthChanged { ${HEALTH_FIELDS} } }` },
    {
      next: ({ data }) => {
        if (!data) return;
        health.set(data.providerHealthChanged.provider, data.providerHealthChanged);
        renderHealth();
        void refreshStats();
      },
      error: () => undefined,
      complete: () => undefined,
    },
  );
  client.subscribe<{ alertRaised: Alert }>(
    { query: `subscription { alertRaised { ${ALERT_FIELDS} } }` },
    {
      next: ({ data }) => {
        if (data) byId("alerts").prepend(alertItem(data.alertRaised));
      },
      error: () => undefined,
      complete: () => undefined,
    },
  );
  timer = setInterval(() => void refreshStats(), REFRESH_MS);
}

function currentWindow(): string {
  return document.querySelector<HTMLInputElement>('input[name="window"]:checked')?.value ?? "HOUR";
}

async function refreshStats(): Promise<void> {
  if (!key()) return;
  const { operatorStats: s } = await request<{ operatorStats: Stats }>(
    key(),
    `query ($w: StatsWindow) { operatorStats(window: $w) {
      queued processing cacheHitRate errorRate spendUsd
      series { start spendUsd errorRate p50LatencyMs p95LatencyMs } } }`,
    { w: currentWindow() },
  );
  byId("queued").textContent = String(s.queued);
  byId("processing").textContent = String(s.processing);
  byId("hit-rate").textContent = percent(s.cacheHitRate);
  byId("error-rate").textContent = percent(s.errorRate);
  byId("spend").textContent = usd(s.spendUsd);
  drawCharts(s.series);
  document.body.dataset.statsLoaded = "true";
}

function drawCharts(series: Bucket[]): void {
  const x = series.map((b) => Date.parse(b.start) / 1000);
  const opt = (
    labels: Array<{ label: string; stroke: string }>,
    id: string,
    format: (v: number) => string,
    range?: [number, number],
  ): uPlot.Options => ({
    width: Math.max(240, byId(id).clientWidth || 320),
    height: 180,
    scales: range ? { y: { range } } : {},
    series: [
      {},
      ...labels.map((l) => ({
        ...l,
        width: 2,
        spanGaps: true,
        value: (_u: uPlot, v: number | null) => (v == null ? "—" : format(v)),
      })),
    ],
    axes: [{}, { size: 64, values: (_u, vals) => vals.map(format) }],
    legend: { show: true },
  });
  type Spec = [
    string,
    Array<{ label: string; stroke: string }>,
    Array<Array<number | null>>,
    (v: number) => string,
    [number, number]?,
  ];
  const specs: Spec[] = [
    ["chart-spend", [{ label: "USD", stroke: "#3467d6" }], [series.map((b) => b.spendUsd)], usd],
    [
      "chart-latency",
      [
        { label: "p50", stroke: "#2a9d5b" },
        { label: "p95", stroke: "#d9822b" },
      ],
      [series.map((b) => b.p50LatencyMs), series.map((b) => b.p95LatencyMs)],
      (v) => ms(v),
    ],
    [
      "chart-errors",
      [{ label: "error rate", stroke: "#c0392b" }],
      [series.map((b) => b.errorRate)],
      percent,
      [0, 1],
    ],
  ];
  specs.forEach(([id, labels, ys, format, range], i) => {
    const data = [x, ...ys] as uPlot.AlignedData;
    const existing = charts[i];
    if (existing) existing.setData(data);
    else charts[i] = new uPlot(opt(labels, id, format, range), data, byId(id));
  });
}

function renderHealth(): void {
  const rows = [...health.values()]
    .sort((a, b) => a.provider.localeCompare(b.provider))
    .map((h) =>
      el(
        "tr",
        { "data-provider": h.provider },
        el("td", {}, h.provider),
        el("td", {}, el("span", { class: "circuit", "data-circuit": h.circuit }, h.circuit)),
        el("td", {}, percent(h.successRate)),
        el("td", {}, String(h.requests)),
        el("td", {}, String(h.failures)),
        el("td", {}, `${ms(h.p50LatencyMs)} / ${ms(h.p95LatencyMs)}`),
        el("td", {}, h.lastError ?? ""),
      ),
    );
  byId("providers")
    .querySelector("tbody")!
    .replaceChildren(...rows);
}

function alertItem(a: Alert): HTMLLIElement {
  return el(
    "li",
    { "data-severity": a.severity, "data-kind": a.kind },
    `${new Date(a.createdAt).toLocaleString()} · ${a.severity} · ${a.kind}: ${a.message}`,
  );
}

function percent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function usd(x: number): string {
  return `$${x.toFixed(x >= 100 ? 0 : x >= 1 ? 2 : 4)}`;
}

function ms(x: number | null): string {
  return x == null ? "—" : `${Math.round(x)} ms`;
}

function showError(message: string | null): void {
  const node = byId("error");
  node.hidden = message == null;
  node.textContent = message ?? "";
}
