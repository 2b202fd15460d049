import {
  Arg,
  Ctx,
  Float,
  ID,
  Int,
  Mutation,
  Query,
  Resolver,
  Root,
  Subscription,
} from "type-graphql";
import type { AlertRow } from "../../cost/budget.repository";
import type { Budget as BudgetData } from "../../cost/budget.service";
import type { GraphQLContext } from "../context";
import { AccountBudget, Alert, Budget } from "../types/budget.types";
import { Tier } from "../types/enums";

@Resolver()
export class BudgetResolver {
  @Query(() => Budget, {
    description:
      "An end user's budget this month. PARTNER: its users; ADMIN names the account; a client token its own user.",
  })
  async budget(
    @Ctx() ctx: GraphQLContext,
    @Arg("userId", () => ID) userId: string,
    @Arg("accountId", () => ID, { nullable: true }) accountId?: string,
  ): Promise<Budget> {
    return toBudget(await ctx.services.budgets.get(ctx.viewer, userId, accountId));
  }

  @Mutation(() => Budget, {
    description:
      "Sets an end user's monthly limit (and tier). Generations are refused with BUDGET_EXCEEDED past it.",
  })
  async setBudget(
    @Ctx() ctx: GraphQLContext,
    @Arg("userId", () => ID) userId: string,
    @Arg("monthlyLimitUsd", () => Float) monthlyLimitUsd: number,
    @Arg("tier", () => Tier, { nullable: true }) tier?: Tier,
    @Arg("accountId", () => ID, { nullable: true }) accountId?: string,
  ): Promise<Budget> {
    return toBudget(
      await ctx.services.budgets.set(ctx.viewer, { userId, monthlyLimitUsd, tier, accountId }),
    );
  }

  @Mutation(() => AccountBudget, {
    description:
      "An account-level monthly limit on top of its users' (PARTNER: its own; ADMIN names one). Null removes it.",
  })
  setAccountBudget(
    @Ctx() ctx: GraphQLContext,
    @Arg("monthlyLimitUsd", () => Float, { nullable: true }) monthlyLimitUsd?: number,
    @Arg("accountId", () => ID, { nullable: true }) accountId?: string,
  ): Promise<AccountBudget> {
    return ctx.services.budgets.setAccountLimit(ctx.viewer, monthlyLimitUsd, accountId);
  }

  @Mutation(() => String, {
    nullable: true,
    description:
      "Where the account's alerts are POSTed (Slack-compatible JSON); null removes it. Returns the URL kept.",
  })
  setAlertWebhook(
    @Ctx() ctx: GraphQLContext,
    @Arg("url", () => String, { nullable: true }) url?: string,
    @Arg("accountId", () => ID, { nullable: true }) accountId?: string,
  ): Promise<string | null> {
    return ctx.services.alerts.setWebhook(ctx.viewer, url, accountId);
  }

  @Query(() => [Alert], {
    description: "Recent alerts, newest first: ADMIN all, a PARTNER its account's.",
  })
  async alerts(
    @Ctx() ctx: GraphQLContext,
    @Arg("first", () => Int, { nullable: true }) first?: number,
  ): Promise<Alert[]> {
    return (await ctx.services.alerts.list(ctx.viewer, first)).map(toAlert);
  }

  @Subscription(() => Alert, {
    description:
      "Budget alerts of the caller's account as they are raised (optionally one user's; a client token its own).",
    subscribe: ({ args, context }) =>
      (context as GraphQLContext).services.alerts.watchBudget(
        (context as GraphQLContext).viewer,
        (args as { userId?: string }).userId,
      ),
  })
  budgetAlerts(
    @Root() alert: AlertRow,
    @Arg("userId", () => ID, { nullable: true }) _userId?: string,
  ): Alert {
    return toAlert(alert);
  }

  @Subscription(() => Alert, {
    description: "ADMIN: every alert as it is raised.",
    subscribe: ({ context }) =>
      (context as GraphQLContext).services.alerts.watchAll((context as GraphQLContext).viewer),
  })
  alertRaised(@Root() alert: AlertRow): Alert {
    return toAlert(alert);
  }
}

function toBudget(b: BudgetData): Budget {
  return { ...b, tier: b.tier as Tier, resetsAt: new Date(b.resetsAt) };
}

function toAlert(a: AlertRow): Alert {
  return { ...a, createdAt: new Date(a.createdAt) };
}
