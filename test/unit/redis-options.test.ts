import { parseHostPorts, redisOptions } from "../../src/infra/redis";

describe("Redis connection options", () => {
  it("reads host, port, credentials, database and TLS from a URL", () => {
    expect(redisOptions("rediss://user:p%40ss@cache.internal:6380/3")).toMatchObject({
      host: "cache.internal",
      port: 6380,
      username: "user",
      password: "p@ss",
      db: 3,
      tls: {},
      maxRetriesPerRequest: null,
    });
  });

  it("asks the sentinels for the master, keeping the URL's credentials and database", () => {
    const options = redisOptions({
      url: "redis://:secret@mymaster/1",
      sentinels: "10.0.0.1:26379, sentinel-b:26380,[::1]:26381",
      sentinelName: "cache",
      sentinelPassword: "s3",
    });
    expect(options).toMatchObject({
      sentinels: [
        { host: "10.0.0.1", port: 26379 },
        { host: "sentinel-b", port: 26380 },
        { host: "::1", port: 26381 },
      ],
      name: "cache",
      password: "secret",
      sentinelPassword: "s3",
      db: 1,
      enableTLSForSentinelMode: false,
    });
    expect(options.host).toBeUndefined();
  });

  it("parses one sentinel address", () => {
    expect(parseHostPorts("localhost:26379")).toEqual([{ host: "localhost", port: 26379 }]);
  });
});
