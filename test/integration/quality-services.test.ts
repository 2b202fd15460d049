import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createLogger } from "../../src/common/logger";
import { sniffContentType } from "../../src/generation/output-store.service";
import { renderAudio, renderImage } from "../../src/providers/simulated/sim-render";
import {
  AlignmentCheck,
  ModerationCheck,
  QualityGate,
  TechnicalCheck,
  type QualityInput,
} from "../../src/quality";

/** A local HTTP server answering with `answer`, recording what it was sent. */
async function fakeServer(
  answer: (body: Record<string, unknown>, req: IncomingMessage, res: ServerResponse) => void,
): Promise<{
  url: string;
  requests: Array<{ path: string; auth?: string; body: any }>;
  close(): Promise<void>;
}> {
  const requests: Array<{ path: string; auth?: string; body: any }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
      requests.push({ path: req.url ?? "", auth: req.headers.authorization, body });
      answer(body, req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

function input(data: Buffer, prompt: string, mediaType: QualityInput["mediaType"] = "IMAGE") {
  return {
    data,
    contentType: sniffContentType(data),
    mediaType,
    prompt,
    width: null,
    height: null,
    durationSeconds: null,
  } satisfies QualityInput;
}

const image = renderImage({ prompt: "a red fox", seed: 3, width: 64, height: 64 }).data;
const logger = createLogger("silent");

describe("the alignment check against an HTTP scorer", () => {
  // The scorer's score is in the prompt, so each test chooses which side of the threshold it is.
  let scorer: Awaited<ReturnType<typeof fakeServer>>;
  beforeAll(async () => {
    scorer = await fakeServer((body, _req, res) => {
      const prompt = String(body.prompt);
      if (prompt.includes("error")) return json(res, 503, { error: "warming up" });
      if (prompt.includes("nonsense")) return json(res, 200, { similarity: "high" });
      json(res, 200, {
        score: Number(/score=([\d.]+)/.exec(prompt)?.[1] ?? 0),
        model: "fake-clip",
      });
    });
  });
  afterAll(() => scorer.close());

  const check = () =>
    new AlignmentCheck({ url: `${scorer.url}/score`, apiKey: "scorer-key", minScore: 0.25 });

  it("sends the prompt and the picture as a PNG data URL, with the key", async () => {
    await check().run(input(image, "a red fox score=0.3"));
    const sent = scorer.requests.at(-1)!;
    expect(sent).toMatchObject({ path: "/score", auth: "Bearer scorer-key" });
    expect(sent.body.prompt).toBe("a red fox score=0.3");
    expect(sent.body.image).toMatch(/^data:image\/png;base64,iVBORw0KGgo/);
  });

  it("passes at the threshold and fails just under it", async () => {
    expect(await check().run(input(image, "score=0.25"))).toMatchObject({
      name: "alignment",
      passed: true,
      score: 0.25,
      details: { similarity: 0.25, min: 0.25, model: "fake-clip" },
    });
    const low = await check().run(input(image, "score=0.249"));
    expect(low).toMatchObject({ passed: false, details: { reason: "alignment 0.249 < 0.25" } });
  });

  it("skips audio without calling the scorer", async () => {
    const before = scorer.requests.length;
    const wav = renderAudio({ prompt: "x", seed: 1, durationSeconds: 1 }).data;
    const result = await check().run(input(wav, "score=0.9", "AUDIO"));
    expect(result).toMatchObject({ passed: true, details: { skipped: true } });
    expect(scorer.requests.length).toBe(before);
  });

  it("an erring scorer is skipped or fails the output, as the policy says", async () => {
    const technical = new TechnicalCheck();
    for (const prompt of ["error", "nonsense"]) {
      const skip = await new QualityGate([technical, check()], "skip", logger).inspect(
        [{ data: image, contentType: "image/png", label: "image/png" }],
        { mediaType: "IMAGE", prompt, width: null, height: null, durationSeconds: null },
      );
      expect(skip.passed).toBe(true);
      expect(skip.score).toBe(1); // the skipped check does not count
      expect(skip.checks[1]).toMatchObject({ name: "alignment", details: { skipped: true } });
      const fail = await new QualityGate([technical, check()], "fail", logger).inspect(
        [{ data: image, contentType: "image/png", label: "image/png" }],
        { mediaType: "IMAGE", prompt, width: null, height: null, durationSeconds: null },
      );
      expect(fail.passed).toBe(false);
      expect(fail.checks[1]).toMatchObject({ name: "alignment", passed: false, score: 0 });
    }
  });

  it("is not asked about an output that failed the technical check", async () => {
    const before = scorer.requests.length;
    const black = renderImage({ prompt: "x", seed: 1, width: 8, height: 8 }).data.subarray(0, 40);
    const report = await new QualityGate([new TechnicalCheck(), check()], "skip", logger).inspect(
      [{ data: black, contentType: "image/png", label: "image/png" }],
      { mediaType: "IMAGE", prompt: "score=1", width: null, height: null, durationSeconds: null },
    );
    expect(report.checks.map((c) => c.name)).toEqual(["technical"]);
    expect(scorer.requests.length).toBe(before);
  });
});

describe("the safety check against OpenAI's moderation endpoint", () => {
  let openai: Awaited<ReturnType<typeof fakeServer>>;
  beforeAll(async () => {
    // Speaks OpenAI's shape; the verdict is chosen by the prompt text.
    openai = await fakeServer((body, req, res) => {
      if (req.url !== "/v1/moderations") return json(res, 404, { error: { message: "no" } });
      const text = (body.input as Array<{ type: string; text?: string }>).find(
        (i) => i.type === "text",
      )!.text!;
      if (text.includes("overloaded")) return json(res, 500, { error: { message: "overloaded" } });
      const violence = Number(/violence=([\d.]+)/.exec(text)?.[1] ?? 0.001);
      const flagged = text.includes("flag");
      json(res, 200, {
        id: "modr-1",
        model: "omni-moderation-2024-09-26",
        results: [
          {
            flagged,
            categories: { sexual: false, violence: flagged },
            category_scores: { sexual: 0.0001, violence },
            category_applied_input_types: {
              sexual: ["text", "image"],
              violence: ["text", "image"],
            },
          },
        ],
      });
    });
  });
  afterAll(() => openai.close());

  const check = (maxCategoryScore?: number) =>
    new ModerationCheck({ apiKey: "sk-test-1234", baseUrl: `${openai.url}/v1`, maxCategoryScore });

  it("sends the prompt and the picture as one multi-modal input", async () => {
    const result = await check().run(input(image, "a red fox"));
    expect(result).toMatchObject({ name: "safety", passed: true, score: 0.999 });
    const sent = openai.requests.at(-1)!;
    expect(sent.auth).toBe("Bearer sk-test-1234");
    expect(sent.body).toMatchObject({
      model: "omni-moderation-latest",
      input: [
        { type: "text", text: "a red fox" },
        {
          type: "image_url",
          image_url: { url: expect.stringMatching(/^data:image\/png;base64,/) },
        },
      ],
    });
  });

  it("fails what OpenAI flags", async () => {
    const result = await check().run(input(image, "flag violence=0.91"));
    expect(result).toMatchObject({
      passed: false,
      score: 0.09,
      details: {
        flagged: true,
        categories: ["violence"],
        reason: "flagged by moderation (violence)",
      },
    });
  });

  it("fails an unflagged output at or above the category limit, and passes one under it", async () => {
    expect((await check(0.4).run(input(image, "violence=0.4"))).details.reason).toBe(
      "violence scored 0.4 ≥ 0.4",
    );
    expect((await check(0.4).run(input(image, "violence=0.39"))).passed).toBe(true);
    expect((await check().run(input(image, "violence=0.4"))).passed).toBe(true);
  });

  it("an erring endpoint is skipped under the default policy", async () => {
    const report = await new QualityGate([check()], "skip", logger).inspect(
      [{ data: image, contentType: "image/png", label: "image/png" }],
      {
        mediaType: "IMAGE",
        prompt: "overloaded",
        width: null,
        height: null,
        durationSeconds: null,
      },
    );
    expect(report).toMatchObject({
      passed: true,
      checks: [
        { name: "safety", details: { skipped: true, error: "moderation answered HTTP 500" } },
      ],
    });
  });
});
