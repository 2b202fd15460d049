import "./demo.css";
import { byId, el, fragmentParams, request, socket, remembered } from "./api";

/**
 * The demo client: what a frontend needs to start a generation with a client token and show
 * its live state from the generationUpdated subscription (graphql-ws). Copy freely.
 */

interface Attempt {
  number: number;
  provider: string;
  model: string;
  status: string;
  error: string | null;
}
interface Output {
  url: string;
  contentType: string;
  width: number | null;
  height: number | null;
}
interface Generation {
  id: string;
  status: string;
  progress: number;
  queuePosition: number | null;
  model: string;
  provider: string | null;
  estimatedCostUsd: number;
  costUsd: number | null;
  cached: boolean;
  cacheHit: { kind: string; similarity: number | null } | null;
  attempts: Attempt[];
  outputs: Output[];
  error: { code: string; message: string } | null;
}

const FIELDS = `id status progress queuePosition model provider estimatedCostUsd costUsd cached
  cacheHit { kind similarity } attempts { number provider model status error }
  outputs { url contentType width height } error { code message }`;

const GENERATE = `mutation ($input: GenerateInput!) { generate(input: $input) { ${FIELDS} } }`;
const WATCH = `subscription ($id: ID!) { generationUpdated(id: $id) { type generation { ${FIELDS} } } }`;

const tokenStore = remembered("demo-token");
const tokenInput = byId<HTMLInputElement>("token");
tokenInput.value = fragmentParams().get("token") ?? tokenStore.get();

let stopWatching: (() => void) | undefined;

byId<HTMLFormElement>("form").addEventListener("submit", (e) => {
  e.preventDefault();
  void start();
});

async function start(): Promise<void> {
  const token = tokenInput.value.trim();
  tokenStore.set(token);
  stopWatching?.();
  byId("job").hidden = false;
  byId("events").replaceChildren();
  byId("output").replaceChildren();
  showError(null);
  try {
    const { generate } = await request<{ generate: Generation }>(token, GENERATE, {
      input: {
        mediaType: byId<HTMLSelectElement>("media").value,
        prompt: byId<HTMLInputElement>("prompt").value,
      },
    });
    render(generate, "CREATED");
    stopWatching = watch(token, generate.id);
  } catch (err) {
    showError(err instanceof Error ? err.message : String(err));
  }
}

/** The current state first, then every change, until the generation finishes. */
function watch(token: string, id: string): () => void {
  const client = socket(token);
  const unsubscribe = client.subscribe<{
    generationUpdated: { type: string; generation: Generation };
  }>(
    { query: WATCH, variables: { id } },
    {
      next: ({ data, errors }) => {
        if (errors?.length) showError(errors.map((x) => x.message).join("; "));
        if (data) render(data.generationUpdated.generation, data.generationUpdated.type);
      },
      error: (err) => showError(err instanceof Error ? err.message : "connection lost"),
      complete: () => void client.dispose(),
    },
  );
  return () => {
    unsubscribe();
    void client.dispose();
  };
}

function render(g: Generation, event: string): void {
  byId("events").append(el("li", {}, `${event} · ${g.status} · ${Math.round(g.progress * 100)}%`));
  const status = byId("status");
  status.textContent = g.status;
  status.dataset.status = g.status;
  byId("queue").textContent =
    g.status === "QUEUED" && g.queuePosition != null ? `position ${g.queuePosition} in queue` : "";
  byId("model").textContent = `${g.model}${g.provider ? ` on ${g.provider}` : ""}`;
  byId<HTMLProgressElement>("progress").value = g.status === "SUCCEEDED" ? 1 : g.progress;
  byId("cost").textContent =
    g.costUsd != null
      ? `$${g.costUsd.toFixed(4)}`
      : `≈ $${g.estimatedCostUsd.toFixed(4)} (estimate)`;
  byId("cache").textContent = g.cacheHit
    ? `hit (${g.cacheHit.kind}${g.cacheHit.similarity != null ? `, similarity ${g.cacheHit.similarity.toFixed(2)}` : ""})`
    : g.cached
      ? "hit"
      : "miss";
  // Each attempt after the first is a retry or a fallback to another provider or model.
  byId("attempts").replaceChildren(
    ...g.attempts.map((a, i) => {
      const prev = g.attempts[i - 1];
      const fallback =
        prev && (prev.provider !== a.provider || prev.model !== a.model) ? " (fallback)" : "";
      return el(
        "li",
        { class: "attempt" },
        `${a.model} on ${a.provider}: ${a.status}${fallback}${a.error ? ` — ${a.error}` : ""}`,
      );
    }),
  );
  if (g.error) showError(`${g.error.code}: ${g.error.message}`);
  if (g.status === "SUCCEEDED") showOutputs(g.outputs);
}

function showOutputs(outputs: Output[]): void {
  byId("output").replaceChildren(
    ...outputs.map((o) => {
      if (o.contentType.startsWith("audio/")) return el("audio", { src: o.url, controls: "" });
      if (o.contentType.startsWith("video/")) return el("video", { src: o.url, controls: "" });
      // Animated PNGs (the simulated video) play in an <img> as well.
      return el("img", { src: o.url, alt: "generated output", id: "result-image" });
    }),
  );
}

function showError(message: string | null): void {
  const node = byId("error");
  node.hidden = message == null;
  node.textContent = message ?? "";
}
