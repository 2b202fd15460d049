import { resolve } from "node:path";
import { defineConfig } from "vite";

// The browser pages, built into dist/web/ and served by the api (src/http/web-pages.ts):
// HTML at /graphql, /demo and /dashboard, everything else hashed under /assets.
export default defineConfig({
  root: import.meta.dirname,
  base: "/",
  publicDir: false,
  build: {
    outDir: resolve(import.meta.dirname, "../dist/web"),
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    chunkSizeWarningLimit: 6000,
    rolldownOptions: {
      // React libraries mark files "use client"; that means nothing without server components.
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
      input: {
        playground: resolve(import.meta.dirname, "playground.html"),
        demo: resolve(import.meta.dirname, "demo.html"),
        dashboard: resolve(import.meta.dirname, "dashboard.html"),
      },
    },
  },
  worker: { format: "es" },
});
