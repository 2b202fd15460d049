import type { StoredOutput } from "../entities";
import type { ProviderOutput } from "../providers";
import { ProviderError } from "../providers";
import { extensionFor, type ObjectStore } from "../storage/object-store";

export interface OutputStoreOptions {
  /** Largest output accepted from a provider. @defaultValue 100 MiB */
  maxBytes?: number;
  /** Time allowed to download one output. @defaultValue 60 s */
  timeoutMs?: number;
}

/** Copies provider outputs into the object store, since provider URLs expire. */
export class OutputStoreService {
  private readonly maxBytes: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly store: ObjectStore,
    opts: OutputStoreOptions = {},
  ) {
    this.maxBytes = opts.maxBytes ?? 100 * 1024 * 1024;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  async storeAll(
    generationId: string,
    attempt: number,
    outputs: ProviderOutput[],
  ): Promise<StoredOutput[]> {
    return Promise.all(
      outputs.map((o, i) => this.storeOne(`generations/${generationId}/${attempt}-${i}`, o)),
    );
  }

  private async storeOne(baseKey: string, output: ProviderOutput): Promise<StoredOutput> {
    const { data, contentType } = output.data
      ? { data: output.data, contentType: output.contentType ?? "application/octet-stream" }
      : await this.download(output.url ?? "", output.contentType);
    const key = `${baseKey}${extensionFor(contentType)}`;
    await this.store.put(key, data, contentType);
    return {
      key,
      contentType,
      bytes: data.length,
      width: output.width,
      height: output.height,
      durationSeconds: output.durationSeconds,
    };
  }

  private async download(
    url: string,
    declared?: string,
  ): Promise<{ data: Buffer; contentType: string }> {
    if (!/^https?:\/\//.test(url))
      throw new ProviderError("provider output has no URL", "INVALID_OUTPUT", true);
    const res = await fetch(url, {
      signal: AbortSignal.timeout(this.timeoutMs),
      redirect: "follow",
    });
    if (!res.ok || !res.body) {
      throw new ProviderError(
        `output download failed with HTTP ${res.status}`,
        "OUTPUT_DOWNLOAD_FAILED",
        true,
      );
    }
    const length = Number(res.headers.get("content-length") ?? 0);
    if (length > this.maxBytes)
      throw new ProviderError("output too large", "OUTPUT_TOO_LARGE", false);
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      total += chunk.length;
      if (total > this.maxBytes)
        throw new ProviderError("output too large", "OUTPUT_TOO_LARGE", false);
      chunks.push(Buffer.from(chunk));
    }
    const contentType = (res.headers.get("content-type") ?? declared ?? "application/octet-stream")
      .split(";")[0]!
      .trim();
    return { data: Buffer.concat(chunks), contentType };
  }
}
