export * from "./account.entity";
export * from "./api-key.entity";
export * from "./attempt.entity";
export * from "./batch.entity";
export * from "./budget-period.entity";
export * from "./callback-delivery.entity";
export * from "./end-user.entity";
export * from "./generation.entity";
export * from "./usage-record.entity";

import { AccountEntity } from "./account.entity";
import { ApiKeyEntity } from "./api-key.entity";
import { AttemptEntity } from "./attempt.entity";
import { BatchEntity } from "./batch.entity";
import { BudgetPeriodEntity } from "./budget-period.entity";
import { CallbackDeliveryEntity } from "./callback-delivery.entity";
import { EndUserEntity } from "./end-user.entity";
import { GenerationEntity } from "./generation.entity";
import { UsageRecordEntity } from "./usage-record.entity";

export const ENTITIES = [
  AccountEntity,
  ApiKeyEntity,
  EndUserEntity,
  GenerationEntity,
  AttemptEntity,
  BatchEntity,
  BudgetPeriodEntity,
  UsageRecordEntity,
  CallbackDeliveryEntity,
];
