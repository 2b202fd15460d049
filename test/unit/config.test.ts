import { ConfigError, loadConfig } from "../../src/config";

describe("configuration", () => {
  it("starts with no variables at all (the embedded default)", () => {
    const c = loadConfig({});
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.REDIS_URL).toBeUndefined();
    expect(c.PORT).toBe(4000);
    expect(c.PUBLIC_URL).toBe("http://localhost:4000");
  });

  it("serves the playground except in production, where PLAYGROUND=true turns it on", () => {
    expect(loadConfig({}).PLAYGROUND).toBe(true);
    expect(loadConfig({ NODE_ENV: "production" }).PLAYGROUND).toBe(false);
    expect(loadConfig({ NODE_ENV: "production", PLAYGROUND: "true" }).PLAYGROUND).toBe(true);
    expect(loadConfig({ PLAYGROUND: "false" }).PLAYGROUND).toBe(false);
    expect(() => loadConfig({ PLAYGROUND: "maybe" })).toThrow(/PLAYGROUND/);
  });

  it("prepares statements unless DB_PREPARED_STATEMENTS=false", () => {
    expect(loadConfig({}).DB_PREPARED_STATEMENTS).toBe(true);
    expect(loadConfig({ DB_PREPARED_STATEMENTS: "false" }).DB_PREPARED_STATEMENTS).toBe(false);
    expect(() => loadConfig({ DB_PREPARED_STATEMENTS: "sometimes" })).toThrow(
      /DB_PREPARED_STATEMENTS/,
    );
  });

  it("names every invalid variable in one message", () => {
    expect(() =>
      loadConfig({ PORT: "http", REDIS_URL: "localhost:6379", SIM_FAILURE_RATE: "2" }),
    ).toThrow(
      /PORT[\s\S]*REDIS_URL: must be a URL starting with redis:\/\/ or rediss:\/\/[\s\S]*SIM_FAILURE_RATE/,
    );
  });

  it("requires a token secret with a real database", () => {
    expect(() => loadConfig({ DATABASE_URL: "postgres://x@localhost/db" })).toThrow(ConfigError);
    expect(() =>
      loadConfig({ DATABASE_URL: "postgres://x@localhost/db", TOKEN_SECRET: "short" }),
    ).toThrow(/at least 32 characters/);
  });

  it("takes Redis Sentinel addresses with REDIS_URL, and refuses them malformed or alone", () => {
    const c = loadConfig({
      REDIS_URL: "redis://:pw@mymaster/2",
      REDIS_SENTINELS: "10.0.0.1:26379, sentinel-b:26380,[::1]:26381",
    });
    expect(c.REDIS_SENTINELS).toBe("10.0.0.1:26379, sentinel-b:26380,[::1]:26381");
    expect(c.REDIS_SENTINEL_NAME).toBe("mymaster");
    expect(() => loadConfig({ REDIS_URL: "redis://x", REDIS_SENTINELS: "sentinel-a" })).toThrow(
      /REDIS_SENTINELS: must be comma-separated host:port pairs/,
    );
    expect(() => loadConfig({ REDIS_URL: "redis://x", REDIS_SENTINELS: "a:1;b:2" })).toThrow(
      /REDIS_SENTINELS/,
    );
    expect(() => loadConfig({ REDIS_SENTINELS: "a:26379" })).toThrow(/needs REDIS_URL/);
    expect(() => loadConfig({ REDIS_URL: "redis://x", REDIS_SENTINEL_NAME: "my master" })).toThrow(
      /REDIS_SENTINEL_NAME/,
    );
  });

  it("batches 50 generations or after 60 s by default, and refuses sizes and timeouts out of range", () => {
    const c = loadConfig({});
    expect(c.BATCH_SIZE).toBe(50);
    expect(c.BATCH_TIMEOUT_SECONDS).toBe(60);
    expect(loadConfig({ BATCH_SIZE: "3", BATCH_TIMEOUT_SECONDS: "0.2" })).toMatchObject({
      BATCH_SIZE: 3,
      BATCH_TIMEOUT_SECONDS: 0.2,
    });
    expect(() => loadConfig({ BATCH_SIZE: "0" })).toThrow(/BATCH_SIZE/);
    expect(() => loadConfig({ BATCH_SIZE: "2.5" })).toThrow(/BATCH_SIZE/);
    expect(() => loadConfig({ BATCH_TIMEOUT_SECONDS: "0.01" })).toThrow(/BATCH_TIMEOUT_SECONDS/);
    expect(() => loadConfig({ BATCH_TIMEOUT_SECONDS: "soon" })).toThrow(/BATCH_TIMEOUT_SECONDS/);
  });

  it("refuses polling bounds that cross", () => {
    expect(() => loadConfig({ POLL_MIN_MS: "5000", POLL_MAX_MS: "100" })).toThrow(/POLL_MIN_MS/);
  });

  it("refuses a staleness window shorter than the polling interval", () => {
    expect(() => loadConfig({ RECONCILE_STALE_SECONDS: "1", POLL_MAX_MS: "5000" })).toThrow(
      /RECONCILE_STALE_SECONDS/,
    );
  });

  it("strips a trailing slash from the public URL", () => {
    expect(loadConfig({ PUBLIC_URL: "https://gen.example.com/" }).PUBLIC_URL).toBe(
      "https://gen.example.com",
    );
  });

  it("turns the quality gate's technical check on and the paid checks off by default", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      QUALITY_TECHNICAL: true,
      QUALITY_MODERATION: "off",
      QUALITY_ON_ERROR: "skip",
      QUALITY_ALIGNMENT_MIN: 0.25,
    });
    expect(c.QUALITY_ALIGNMENT_URL).toBeUndefined();
  });

  it("refuses OpenAI moderation without an OpenAI key, and a scorer URL that is not http(s)", () => {
    expect(() => loadConfig({ QUALITY_MODERATION: "openai" })).toThrow(
      /QUALITY_MODERATION: openai needs OPENAI_API_KEY/,
    );
    expect(() => loadConfig({ QUALITY_ALIGNMENT_URL: "ftp://scorer" })).toThrow(
      /QUALITY_ALIGNMENT_URL: must be a URL starting with http:\/\/ or https:\/\//,
    );
    expect(() => loadConfig({ QUALITY_SIZE_TOLERANCE: "2" })).toThrow(/QUALITY_SIZE_TOLERANCE/);
  });
});

describe("request limits", () => {
  it("has production defaults", () => {
    expect(loadConfig({})).toMatchObject({
      MAX_QUERY_DEPTH: 15,
      MAX_QUERY_COMPLEXITY: 10000,
      MAX_QUERY_TOKENS: 5000,
      MAX_REQUEST_BYTES: 1048576,
      WS_MAX_CONNECTIONS_PER_KEY: 100,
      WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: 100,
      WS_MAX_SUBSCRIPTIONS_PER_KEY: 1000,
      WS_MAX_CONNECTIONS: 10000,
    });
  });

  it.each([
    ["MAX_QUERY_DEPTH", ["1", "101", "3.5", "deep"]],
    ["MAX_QUERY_COMPLEXITY", ["9", "10000001", "-1", "lots"]],
    ["MAX_QUERY_TOKENS", ["99", "1000001", "1e3x"]],
    ["MAX_REQUEST_BYTES", ["1023", String(100 * 1024 * 1024 + 1), "1mb"]],
    ["WS_MAX_CONNECTIONS_PER_KEY", ["0", "2.5", "many"]],
    ["WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", ["0", "-3", "x"]],
    ["WS_MAX_SUBSCRIPTIONS_PER_KEY", ["0", "10000001", "x"]],
    ["WS_MAX_CONNECTIONS", ["0", "10000001", "x"]],
  ])("refuses a bad %s", (name, values) => {
    for (const value of values) {
      expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(name));
    }
  });

  it("accepts values in range", () => {
    expect(
      loadConfig({
        MAX_QUERY_DEPTH: "2",
        MAX_REQUEST_BYTES: "1024",
        WS_MAX_CONNECTIONS: "1",
        WS_MAX_CONNECTIONS_PER_KEY: "1",
      }),
    ).toMatchObject({ MAX_QUERY_DEPTH: 2, MAX_REQUEST_BYTES: 1024, WS_MAX_CONNECTIONS: 1 });
  });

  it("refuses caps that contradict each other", () => {
    expect(() =>
      loadConfig({ WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: "50", WS_MAX_SUBSCRIPTIONS_PER_KEY: "10" }),
    ).toThrow(/WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: must not exceed WS_MAX_SUBSCRIPTIONS_PER_KEY/);
    expect(() =>
      loadConfig({ WS_MAX_CONNECTIONS_PER_KEY: "50", WS_MAX_CONNECTIONS: "10" }),
    ).toThrow(/WS_MAX_CONNECTIONS_PER_KEY: must not exceed WS_MAX_CONNECTIONS/);
  });
});
