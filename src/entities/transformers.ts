import type { ValueTransformer } from "typeorm";

/**
 * USD amounts are `numeric` in Postgres so that sums are exact; the driver returns them as
 * strings, and the domain reads them as numbers rounded to micro-dollars.
 */
export const usd: ValueTransformer = {
  to: (value: number | null | undefined) => (value == null ? value : value.toFixed(6)),
  from: (value: string | null) => (value == null ? null : Number(value)),
};
