import { Writable } from "node:stream";
import { createLogger } from "../../src/common/logger";
import { withLogFields } from "../../src/common/log-context";

function capture(sensitive: boolean): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
      cb();
    },
  });
  return { lines, log: createLogger("info", {}, { sensitive, destination: sink }) };
}

const SECRET_FIELDS = {
  prompt: "a secret castle",
  negativePrompt: "no dragons",
  apiKey: "gg_live_abc",
  generation: { prompt: "nested castle", key: "gg_nested" },
  req: { headers: { authorization: "Bearer gg_header" } },
  token: "tok_1",
};

describe("logger", () => {
  it("redacts prompts, keys, tokens and authorization at any of the first three levels", () => {
    const { lines, log } = capture(false);
    log.info(SECRET_FIELDS, "request");

    expect(lines).toHaveLength(1);
    for (const secret of ["castle", "dragons", "gg_live_abc", "gg_nested", "gg_header", "tok_1"])
      expect(lines[0]).not.toContain(secret);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      prompt: "[redacted]",
      req: { headers: { authorization: "[redacted]" } },
    });
  });

  it("keeps them with LOG_SENSITIVE", () => {
    const { lines, log } = capture(true);
    log.info(SECRET_FIELDS, "request");

    expect(JSON.parse(lines[0]!)).toMatchObject(SECRET_FIELDS);
  });

  it("adds the generation of the surrounding queue step to every line", () => {
    const { lines, log } = capture(false);
    withLogFields({ generationId: "g-1" }, () => log.info("inside"));
    log.info("outside");

    expect(JSON.parse(lines[0]!).generationId).toBe("g-1");
    expect(JSON.parse(lines[1]!).generationId).toBeUndefined();
  });
});
