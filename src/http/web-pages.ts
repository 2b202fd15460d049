import fs from "node:fs";
import path from "node:path";
import express, { type Express, type Request, type Response } from "express";

/**
 * The browser pages built by Vite from `web/` into `dist/web/`: the GraphiQL playground at
 * GET /graphql (for a browser asking for HTML), the demo client at /demo and the operators'
 * dashboard at /dashboard. Everything they load is under /assets with a content hash in its
 * name, so it is cached for a year; the HTML itself is revalidated on every load.
 */
export interface WebPagesOptions {
  /** Serve GraphiQL at GET /graphql to browsers (config `PLAYGROUND`). */
  playground: boolean;
  /** Where the built pages are. Default: `dist/web` of this installation. */
  dir?: string;
}

/** `dist/web` whether this runs compiled (`dist/src/http`) or from source (`src/http`, tests). */
export function defaultWebDir(): string {
  const root = path.resolve(__dirname, "../..");
  return path.basename(root) === "dist" ? path.join(root, "web") : path.join(root, "dist", "web");
}

const YEAR_SECONDS = 365 * 24 * 3600;

export function mountWebPages(app: Express, graphqlPath: string, opts: WebPagesOptions): void {
  const dir = opts.dir ?? defaultWebDir();
  app.use(
    "/assets",
    express.static(path.join(dir, "assets"), {
      immutable: true,
      maxAge: YEAR_SECONDS * 1000,
      index: false,
    }),
    // A missing asset is a plain 404, never the error handler's page.
    (_req: Request, res: Response) => {
      res.status(404).type("text/plain").send("not found\n");
    },
  );
  const page = (file: string) => (_req: Request, res: Response) => {
    const full = path.join(dir, file);
    if (!fs.existsSync(full)) {
      res
        .status(503)
        .type("text/plain")
        .send("The browser pages are not built: run `npm run build`.\n");
      return;
    }
    res.setHeader("cache-control", "no-cache");
    res.sendFile(full);
  };
  if (opts.playground) {
    // Only a browser navigating here gets the page; GET queries (`?query=`) and every
    // other client still reach the GraphQL server behind.
    app.get(graphqlPath, (req, res, next) => {
      const wantsPage =
        req.query.query === undefined &&
        req.accepts(["application/json", "text/html"]) === "text/html";
      if (!wantsPage) return next();
      page("playground.html")(req, res);
    });
  }
  app.get("/demo", page("demo.html"));
  app.get("/dashboard", page("dashboard.html"));
}
