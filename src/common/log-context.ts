import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Fields every log line written inside `run` carries (the generation a queue step is about),
 * without passing a child logger through every call. Read by the logger's mixin.
 */
export interface LogFields {
  generationId?: string;
}

const storage = new AsyncLocalStorage<LogFields>();

export function withLogFields<T>(fields: LogFields, fn: () => T): T {
  return storage.run({ ...storage.getStore(), ...fields }, fn);
}

export function currentLogFields(): LogFields | undefined {
  return storage.getStore();
}
