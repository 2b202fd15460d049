# syntax=docker/dockerfile:1

# gengate: one image, several roles. The command picks the role:
#   all (default) | api | worker | migrate | create-key --role admin|partner | print-schema
#
#   docker build -t gengate .
#   docker run -p 4000:4000 -v gengate-data:/data gengate            # embedded PGlite, in-process queue
#   docker run -e DATABASE_URL=... -e REDIS_URL=... -e TOKEN_SECRET=... gengate api

ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------------------------
# build: compile TypeScript, then keep only the production dependencies
FROM ${NODE_IMAGE} AS build
WORKDIR /app

# Dependencies first, so this layer is reused until the lockfile changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

# `npm run build` compiles src/ and migrations/ into dist/ (tsc), then the browser pages of
# web/ into dist/web/ (Vite): their libraries are bundled there, so they stay dev dependencies.
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
COPY web ./web
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---------------------------------------------------------------------------------------------
# runtime: compiled program, production node_modules, non-root user
FROM ${NODE_IMAGE} AS runtime

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=4000 \
    DATA_DIR=/data

WORKDIR /app

# The data folder (local object store; PGlite and its token secret when there is no
# DATABASE_URL) belongs to `node`. It is created before VOLUME so the ownership is kept,
# and a named volume mounted here starts with the same ownership.
RUN mkdir -p /data && chown node:node /data

# The program itself stays owned by root: the process can read it, not change it.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist

USER node
VOLUME ["/data"]
EXPOSE 4000

# Liveness of the HTTP roles (all, api). A `worker` has no HTTP server: disable this check
# for it (docker-compose.yml does). No curl in slim images, so node's own fetch.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||4000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

ENTRYPOINT ["node", "dist/src/main.js"]
CMD ["all"]
