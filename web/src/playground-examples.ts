/**
 * The operations the playground opens with, one tab each. Opened with `#generation=<id>`,
 * the subscription watching that generation comes first.
 */
export function exampleTabs(generationId: string): Array<{ query: string; variables?: string }> {
  const [generate, watch, ...rest] = examples(generationId);
  return generationId ? [watch!, generate!, ...rest] : [generate!, watch!, ...rest];
}

function examples(generationId: string): Array<{ query: string; variables?: string }> {
  return [
    {
      query: `# Start a generation. With a PARTNER or ADMIN key, name the end user (userId);
# a client token implies it. Then watch it in the next tab.
mutation Generate($input: GenerateInput!) {
  generate(input: $input) {
    id
    status
    model
    queuePosition
    estimatedCostUsd
    estimatedSeconds
    cached
  }
}
`,
      variables: JSON.stringify(
        {
          input: {
            userId: "user-42",
            mediaType: "IMAGE",
            prompt: "a lighthouse at dusk",
            width: 512,
            height: 512,
          },
        },
        null,
        2,
      ),
    },
    {
      query: `# Live state of one generation over the WebSocket: the current state first,
# then every change, until it finishes.
subscription Watch($id: ID!) {
  generationUpdated(id: $id) {
    type
    at
    generation {
      status
      progress
      queuePosition
      costUsd
      cached
      attempts { number provider model status error }
      outputs { url contentType width height }
      error { code message }
    }
  }
}
`,
      variables: JSON.stringify({ id: generationId || "paste a generation id" }, null, 2),
    },
    {
      query: `# An end user's budget this month.
query Budget($userId: ID!) {
  budget(userId: $userId) {
    tier
    limitUsd
    spentUsd
    reservedUsd
    remainingUsd
    percentUsed
    resetsAt
  }
}
`,
      variables: JSON.stringify({ userId: "user-42" }, null, 2),
    },
    {
      query: `# Spend and cache savings over a period, per day and model.
query Usage($from: DateTime!, $to: DateTime!) {
  usage(from: $from, to: $to, groupBy: [DAY, MODEL]) {
    totalCostUsd
    generations
    cacheHits
    cacheHitRate
    savedUsd
    rows { day model generations costUsd cacheHits avgDurationMs }
  }
}
`,
      variables: JSON.stringify(
        {
          from: new Date(Date.now() - 30 * 86_400_000).toISOString(),
          to: new Date(Date.now() + 60_000).toISOString(),
        },
        null,
        2,
      ),
    },
  ];
}
