/** @type {import('jest').Config} */
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
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  // The fault suite has a config (and private Postgres and Redis) of its own: npm run test:faults.
  testPathIgnorePatterns: ["/node_modules/", "<rootDir>/test/faults/"],
  // request-filtering-agent ships only as an ES module: compile it to CommonJS like our code.
  transform: { "^.+\\.(ts|js)$": ["@swc/jest", swc] },
  transformIgnorePatterns: ["/node_modules/(?!request-filtering-agent/)"],
  globalSetup: "<rootDir>/test/global-setup.ts",
  globalTeardown: "<rootDir>/test/global-teardown.ts",
  testTimeout: 30000,
  maxWorkers: 2,
};
