import "graphiql/setup-workers/vite";
import "graphiql/style.css";
import "./playground.css";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import { StrictMode, useMemo, useState } from "react";
import { createRoot } from "react-dom/client";
import { bearer, byId, fragmentParams, httpUrl, remembered, wsUrl } from "./api";
import { exampleTabs } from "./playground-examples";

const storedKey = remembered("playground-key");

function Playground() {
  const [key, setKey] = useState(() => storedKey.get());
  // One fetcher per credential: the same string goes in the HTTP header and in the
  // WebSocket's connectionParams, where graphql-ws has no headers.
  const fetcher = useMemo(() => {
    const auth = key ? { authorization: bearer(key) } : undefined;
    return createGraphiQLFetcher({
      url: httpUrl(),
      subscriptionUrl: wsUrl(),
      headers: auth,
      wsConnectionParams: auth,
    });
  }, [key]);
  const generationId = fragmentParams().get("generation") ?? "";
  const tabs = useMemo(() => exampleTabs(generationId), [generationId]);
  // GraphiQL fills the first tab from initialQuery/initialVariables, not from defaultTabs; a
  // link to a generation replaces whatever tab was open, a plain visit only a fresh browser's.
  const firstTab =
    generationId || !localStorage.getItem("graphiql:tabState")
      ? { initialQuery: tabs[0]?.query, initialVariables: tabs[0]?.variables }
      : {};
  return (
    <>
      <form
        className="gg-keybar"
        onSubmit={(e) => {
          e.preventDefault();
          const value = new FormData(e.currentTarget).get("key");
          const next = typeof value === "string" ? value.trim() : "";
          storedKey.set(next);
          setKey(next);
        }}
      >
        <label htmlFor="gg-key">API key or client token</label>
        <input
          id="gg-key"
          name="key"
          type="password"
          autoComplete="off"
          placeholder="gg_… (kept in this browser only)"
          defaultValue={key}
        />
        <button type="submit">Use</button>
        <span id="gg-key-state">{key ? "key set" : "no key"}</span>
        <a href="/demo">demo</a>
        <a href="/dashboard">dashboard</a>
      </form>
      <div className="gg-graphiql">
        <GraphiQL
          fetcher={fetcher}
          defaultTabs={tabs}
          {...firstTab}
          defaultEditorToolsVisibility="variables"
          shouldPersistHeaders={false}
        />
      </div>
    </>
  );
}

createRoot(byId("root")).render(
  <StrictMode>
    <Playground />
  </StrictMode>,
);
