/**
 * The fault injection suite (`npm run test:faults`): the built program under load while its
 * workers, api processes, Redis, Postgres and providers fail. It starts a Postgres cluster and
 * a Redis server of its own (it restarts and flushes them), so it needs neither the shared
 * ones nor jest's global setup. `npm test` leaves test/faults out (see jest.config.js).
 * @type {import('jest').Config}
 */
const swc = {
  jsc: {
    parser: { syntax: "typescript", decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
    target: "es2022",
  },
  module: { type: "commonjs" },
  sourceMaps: "inline",
};

module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/test/faults"],
  testMatch: ["**/*.test.ts"],
  transform: { "^.+\\.(ts|js)$": ["@swc/jest", swc] },
  transformIgnorePatterns: ["/node_modules/(?!request-filtering-agent/)"],
  // Each scenario waits on events, with generous limits for a loaded machine.
  testTimeout: 180000,
  // The two files (processes, backing services) run side by side, each with its own servers.
  maxWorkers: 2,
};
