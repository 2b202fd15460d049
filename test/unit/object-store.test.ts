import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { LocalObjectStore } from "../../src/storage/object-store";

/**
 * Two finishers of one generation (say, a status check a dead worker left delayed and one
 * the reconciler started) may store the same output key at once. Storing one output twice
 * must be harmless (same bytes); a failure here makes the processor fail a provider attempt
 * that succeeded and pay for another one.
 */
describe("LocalObjectStore under concurrent writers", () => {
  let root: string;

  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-store-"));
  });

  afterAll(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it("stores the same key written twice at once without failing either write", async () => {
    const store = new LocalObjectStore(root);
    const data = Buffer.alloc(256 * 1024, 7);
    const key = "generations/00000000-0000-4000-8000-000000000000/1-0.png";

    const results = await Promise.allSettled([
      store.put(key, data, "image/png"),
      store.put(key, data, "image/png"),
    ]);

    expect(results.map((r) => (r.status === "rejected" ? String(r.reason) : "ok"))).toEqual([
      "ok",
      "ok",
    ]);
    const stored = await store.get(key);
    expect(stored?.data.equals(data)).toBe(true);
    // No temporary file is left behind next to the output.
    expect(fs.readdirSync(path.dirname(path.join(root, key)))).toEqual(["1-0.png"]);
  });
});
