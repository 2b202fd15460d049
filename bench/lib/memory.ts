/**
 * A process's memory as the bench reports it: resident set size from /proc, and the V8 heap
 * in use, after a full GC when asked, read through the inspector of a process started with
 * `inspect: true` (Chrome DevTools protocol: `HeapProfiler.collectGarbage`,
 * `Runtime.getHeapUsage`). Nothing is added to gengate for this.
 */
import WebSocket from "ws";
import { rssBytes, type GengateProcess } from "./processes";

export class Inspector {
  private nextId = 1;
  private readonly pending = new Map<number, (result: Record<string, unknown>) => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on("message", (data: Buffer) => {
      const msg = JSON.parse(data.toString()) as { id?: number; result?: Record<string, unknown> };
      if (msg.id !== undefined) {
        this.pending.get(msg.id)?.(msg.result ?? {});
        this.pending.delete(msg.id);
      }
    });
  }

  static async connect(url: string): Promise<Inspector> {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return new Inspector(ws);
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Bytes of V8 heap in use; after a full collection when `gc`. */
  async heapUsed(gc = false): Promise<number> {
    if (gc) {
      await this.call("HeapProfiler.collectGarbage");
      await this.call("HeapProfiler.collectGarbage");
    }
    const usage = await this.call("Runtime.getHeapUsage");
    return Number(usage.usedSize);
  }

  close(): void {
    this.ws.close();
  }
}

export interface MemorySample {
  /** ms since the sampler started */
  t: number;
  rss: number;
  heap: number;
}

/** Samples a process's RSS (and heap, when it has an inspector) every `everyMs`. */
export class MemorySampler {
  readonly samples: MemorySample[] = [];
  private timer?: NodeJS.Timeout;
  private readonly began = performance.now();

  constructor(
    private readonly proc: GengateProcess,
    private readonly inspector?: Inspector,
  ) {}

  start(everyMs = 1000): this {
    const tick = async () => {
      const t = performance.now() - this.began;
      const heap = this.inspector ? await this.inspector.heapUsed(false) : NaN;
      this.samples.push({ t, rss: rssBytes(this.proc.pid), heap });
    };
    void tick();
    this.timer = setInterval(() => void tick(), everyMs);
    return this;
  }

  stop(): MemorySample[] {
    clearInterval(this.timer);
    return this.samples;
  }
}
