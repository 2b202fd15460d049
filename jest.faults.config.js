/**
 * The fault injection suite (`npm run test:faults`): the built program under load while its
 * workers, api processes, Redis, Postgres and providers fail. It starts a Postgres cluster and
 * a Redis server of its own (it restarts and flushes them), so it needs neither the shared
 * ones nor jest's global setup. `npm test` leaves test/faults out (see jest.config.js).
 * @type {import('jest').Config}
 */
const base = require("./jest.config.js");

module.exports = {
  // The same compilation as every other test (base.transform).
  ...base,
  roots: ["<rootDir>/test/faults"],
  // The base config ignores test/faults, which is all this one runs.
  testPathIgnorePatterns: ["/node_modules/"],
  globalSetup: undefined,
  globalTeardown: undefined,
  // Each scenario waits on events, with generous limits for a loaded machine.
  testTimeout: 180000,
};
