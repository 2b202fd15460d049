import type { CacheAdminService } from "../cache/cache-admin.service";
import type { CatalogService } from "../cost/catalog.service";
import type { UsageService } from "../cost/usage.service";
import type { BudgetService } from "../cost/budget.service";
import type { AlertService } from "../observability/alert.service";
import type { OperatorStatsService } from "../observability/operator-stats.service";
import type { AuthService } from "../auth/auth.service";
import type { CallbackSecretsService } from "../callbacks";
import type { ProviderHealthService } from "../routing/provider-health.service";
import type { ModelCatalog } from "../cost/model-catalog";
import type { GenerationService } from "../generation/generation.service";
import type { GenerationSubscriptions } from "../generation/generation.subscriptions";
import type { OutputUrlSigner } from "../storage/object-store";

/** What the GraphQL layer may call: services only, never a repository or Redis. */
export interface Services {
  auth: AuthService;
  generations: GenerationService;
  subscriptions: GenerationSubscriptions;
  catalog: ModelCatalog;
  /** Reading and editing the model catalog (models, upsertModel, deprecateModel). */
  catalogAdmin: CatalogService;
  urlSigner: OutputUrlSigner;
  callbacks: CallbackSecretsService;
  providerHealth: ProviderHealthService;
  usage: UsageService;
  cacheAdmin: CacheAdminService;
  budgets: BudgetService;
  alerts: AlertService;
  /** The operators' dashboard: live counts and the last hour's or day's series. */
  operatorStats: OperatorStatsService;
  /** A fresh, expiring link to a stored output: presigned by S3, or signed for /files/. */
  outputUrl(key: string): Promise<string>;
}
