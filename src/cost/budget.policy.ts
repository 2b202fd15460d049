/** Monthly limits of end users without one of their own, by tier. */
export interface BudgetDefaults {
  FREE: number;
  PRO: number;
  ENTERPRISE: number;
}

/** A budget's period: the UTC calendar month, as `YYYY-MM`. */
export function periodOf(at: Date): string {
  return at.toISOString().slice(0, 7);
}

/** When the period of `at` ends: the first instant of the next UTC month. */
export function periodEnd(at: Date): Date {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1));
}

/** Share of the limit at which the one warning of the period is raised. */
export const WARNING_RATIO = 0.8;
