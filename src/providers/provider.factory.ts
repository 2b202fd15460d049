import type { Config } from "../config";
import { FalAdapter } from "./fal";
import { OpenAIImagesAdapter } from "./openai";
import type { ProviderAdapter } from "./provider.adapter";
import { ProviderRegistry } from "./provider.registry";
import { ReplicateAdapter } from "./replicate";
import { SimulatedProviderAdapter } from "./simulated/simulated.adapter";
import { SimServerAdapter } from "./simulated/sim-server.adapter";
import { WaveSpeedAdapter } from "./wavespeed";

/**
 * The providers this deployment can reach: each one whose credential is configured. The
 * simulated provider is always there: in-process by default, or a `gengate sim-provider`
 * server (spoken to with the Replicate protocol) when SIM_PROVIDER_URL is set.
 */
/** Names of the simulated providers, in preference order (the catalog routes sim models to them). */
export const SIMULATED_PROVIDERS = ["simulated", "simulated-2", "simulated-3"] as const;

/** Every provider name a deployment can have: what a catalog route may name. */
export const PROVIDER_NAMES: readonly string[] = [
  ...SIMULATED_PROVIDERS,
  "replicate",
  "fal",
  "wavespeed",
  "openai",
];

export function createProviderRegistry(config: Config): ProviderRegistry {
  const adapters: ProviderAdapter[] = [];
  if (config.SIM_PROVIDER_URL) {
    // Several servers (comma-separated) are several providers: simulated, simulated-2, ...
    config.SIM_PROVIDER_URL.split(",").forEach((url, i) => {
      adapters.push(
        new SimServerAdapter({
          name: SIMULATED_PROVIDERS[i]!,
          baseUrl: `${url.trim().replace(/\/+$/, "")}/v1`,
          apiToken: config.SIM_PROVIDER_TOKEN!,
          webhookSecret: config.SIM_PROVIDER_WEBHOOK_SECRET,
        }),
      );
    });
  } else {
    adapters.push(
      new SimulatedProviderAdapter({
        latencyMs: config.SIM_LATENCY_MS,
        latencyJitter: config.SIM_LATENCY_JITTER,
        failureRate: config.SIM_FAILURE_RATE,
        progressSteps: config.SIM_PROGRESS_STEPS,
      }),
    );
  }
  if (config.REPLICATE_API_TOKEN) {
    adapters.push(
      new ReplicateAdapter({
        apiToken: config.REPLICATE_API_TOKEN,
        baseUrl: config.REPLICATE_BASE_URL,
        webhookSecret: config.REPLICATE_WEBHOOK_SECRET,
      }),
    );
  }
  if (config.FAL_KEY) {
    adapters.push(
      new FalAdapter({
        apiKey: config.FAL_KEY,
        baseUrl: config.FAL_BASE_URL,
        jwksUrl: config.FAL_JWKS_URL,
      }),
    );
  }
  if (config.WAVESPEED_API_KEY) {
    adapters.push(
      new WaveSpeedAdapter({
        apiKey: config.WAVESPEED_API_KEY,
        baseUrl: config.WAVESPEED_BASE_URL,
        webhookSecret: config.WAVESPEED_WEBHOOK_SECRET,
      }),
    );
  }
  if (config.OPENAI_API_KEY) {
    adapters.push(
      new OpenAIImagesAdapter({ apiKey: config.OPENAI_API_KEY, baseUrl: config.OPENAI_BASE_URL }),
    );
  }
  return new ProviderRegistry(adapters);
}
