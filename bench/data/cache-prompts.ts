/**
 * Labelled prompts for replaying traffic through the semantic cache.
 *
 * Each base prompt comes with variants and a verdict: may the cache answer the variant with the
 * base prompt's output?
 * - `exact`: the same text up to case, spacing and punctuation. Should hit.
 * - `paraphrase`: the same meaning in mostly the same words (another order, stop words,
 *   plurals, inflections, "over" for "above"). Should hit; a lexical embedder is expected to.
 * - `synonym`: the same meaning in other words ("sea" for "ocean"). Should hit, but only an
 *   embedder that models meaning can; a lexical one is not expected to.
 * - `near-duplicate`: one change that gives another picture or sound (colour, subject, count,
 *   style, place, time, action). Must not hit: serving it from the cache is a wrong answer.
 */
import type { MediaType } from "../../src/entities/generation.entity";

export type VariantKind = "exact" | "paraphrase" | "synonym" | "near-duplicate";

/** What a near-duplicate changes. */
export type Change =
  "colour" | "subject" | "count" | "style" | "place" | "time" | "action" | "attribute";

export interface PromptVariant {
  text: string;
  kind: VariantKind;
  /** True when the base prompt's output is a right answer for this text. */
  shouldHit: boolean;
  /** For a near-duplicate, what it changes. */
  change?: Change;
}

export interface CachePrompt {
  id: string;
  mediaType: MediaType;
  prompt: string;
  variants: PromptVariant[];
}

interface Spec {
  exact: string[];
  paraphrase?: string[];
  synonym?: string[];
  near: Array<[text: string, change: Change]>;
}

function entry(id: string, mediaType: MediaType, prompt: string, spec: Spec): CachePrompt {
  return {
    id,
    mediaType,
    prompt,
    variants: [
      ...spec.exact.map((text) => ({ text, kind: "exact" as const, shouldHit: true })),
      ...(spec.paraphrase ?? []).map((text) => ({
        text,
        kind: "paraphrase" as const,
        shouldHit: true,
      })),
      ...(spec.synonym ?? []).map((text) => ({ text, kind: "synonym" as const, shouldHit: true })),
      ...spec.near.map(([text, change]) => ({
        text,
        kind: "near-duplicate" as const,
        shouldHit: false,
        change,
      })),
    ],
  };
}

export const CACHE_PROMPTS: readonly CachePrompt[] = [
  // Images: animals
  entry("red-fox-snow", "IMAGE", "a red fox in the snow", {
    exact: ["A Red Fox in the Snow", "a red fox in the snow."],
    paraphrase: ["red foxes in snow", "a red fox in snow"],
    synonym: ["a ginger fox on snowy ground"],
    near: [
      ["a white fox in the snow", "colour"],
      ["a red wolf in the snow", "subject"],
      ["two red foxes in the snow", "count"],
    ],
  }),
  entry("cat-sofa", "IMAGE", "a cat sleeping on a sofa", {
    exact: ["a cat sleeping on a sofa ", "A CAT SLEEPING ON A SOFA"],
    paraphrase: ["cat sleeps on the sofa", "a sleeping cat on a sofa"],
    synonym: ["a kitten napping on a couch"],
    near: [
      ["a dog sleeping on a sofa", "subject"],
      ["a cat sleeping under a sofa", "place"],
      ["a cat playing on a sofa", "action"],
    ],
  }),
  entry("golden-retriever-beach", "IMAGE", "a golden retriever running on the beach", {
    exact: [
      "A golden retriever running on the beach!",
      "a  golden  retriever running on the beach",
    ],
    paraphrase: ["golden retriever runs on a beach", "golden retrievers running on beaches"],
    synonym: ["a golden retriever sprinting along the shore"],
    near: [
      ["a black labrador running on the beach", "subject"],
      ["a golden retriever swimming at the beach", "action"],
      ["three golden retrievers running on the beach", "count"],
    ],
  }),
  entry("owl-branch", "IMAGE", "an owl perched on a branch at night", {
    exact: ["An owl perched on a branch at night", "an owl perched on a branch at night..."],
    paraphrase: ["owl perched on a branch, night", "at night, an owl perched on a branch"],
    near: [
      ["an owl perched on a branch at noon", "time"],
      ["a crow perched on a branch at night", "subject"],
      ["a white owl perched on a branch at night", "colour"],
    ],
  }),
  entry("koi-pond", "IMAGE", "koi fish swimming in a pond, top view", {
    exact: ["Koi fish swimming in a pond, top view", "koi fish swimming in a pond top view"],
    paraphrase: ["top view of koi fish swimming in a pond", "koi fishes swim in a pond, top view"],
    near: [
      ["goldfish swimming in a pond, top view", "subject"],
      ["koi fish swimming in a pond, side view", "attribute"],
      ["koi fish swimming in an aquarium, top view", "place"],
    ],
  }),
  entry("horse-field", "IMAGE", "a brown horse grazing in a field", {
    exact: ["A brown horse grazing in a field.", "a brown horse  grazing in a field"],
    paraphrase: ["brown horses grazing in fields", "in a field, a brown horse grazing"],
    synonym: ["a chestnut horse eating grass in a meadow"],
    near: [
      ["a white horse grazing in a field", "colour"],
      ["a brown cow grazing in a field", "subject"],
      ["a brown horse galloping in a field", "action"],
    ],
  }),
  entry("butterfly-flower", "IMAGE", "a blue butterfly on a yellow flower, macro photo", {
    exact: [
      "A blue butterfly on a yellow flower, macro photo",
      "a blue butterfly on a yellow flower; macro photo",
    ],
    paraphrase: [
      "macro photo of a blue butterfly on a yellow flower",
      "blue butterflies on yellow flowers, macro photo",
    ],
    near: [
      ["a yellow butterfly on a blue flower, macro photo", "colour"],
      ["a blue butterfly on a red flower, macro photo", "colour"],
      ["a blue bee on a yellow flower, macro photo", "subject"],
    ],
  }),
  entry("penguins-ice", "IMAGE", "penguins standing on an iceberg", {
    exact: ["Penguins standing on an iceberg", "penguins standing on an iceberg!"],
    paraphrase: ["penguins stand on an iceberg", "a penguin standing on iceberg"],
    near: [
      ["polar bears standing on an iceberg", "subject"],
      ["penguins swimming under an iceberg", "action"],
    ],
  }),
  entry("elephant-savanna", "IMAGE", "an elephant walking across the savanna at sunset", {
    exact: [
      "An elephant walking across the savanna at sunset",
      "an elephant walking across the savanna at sunset.",
    ],
    paraphrase: [
      "elephant walks across the savanna at sunset",
      "at sunset, an elephant walking across the savanna",
    ],
    near: [
      ["a giraffe walking across the savanna at sunset", "subject"],
      ["an elephant walking across the savanna at dawn", "time"],
      ["an elephant walking across the desert at sunset", "place"],
    ],
  }),
  entry("hummingbird", "IMAGE", "a hummingbird drinking nectar from a red flower", {
    exact: [
      "A hummingbird drinking nectar from a red flower",
      "a hummingbird, drinking nectar from a red flower",
    ],
    paraphrase: [
      "hummingbirds drinking nectar from red flowers",
      "hummingbird drinks nectar from a red flower",
    ],
    near: [
      ["a hummingbird drinking nectar from a purple flower", "colour"],
      ["a bee drinking nectar from a red flower", "subject"],
    ],
  }),
  // Images: people
  entry("old-fisherman", "IMAGE", "portrait of an old fisherman with a grey beard", {
    exact: [
      "Portrait of an old fisherman with a grey beard",
      "portrait of an old fisherman with a grey beard.",
    ],
    paraphrase: [
      "portrait of an old fisherman with a gray beard",
      "old fisherman with grey beard, portrait",
    ],
    synonym: ["headshot of an elderly fisherman with a grey beard"],
    near: [
      ["portrait of a young fisherman with a grey beard", "attribute"],
      ["portrait of an old fisherman with a red beard", "colour"],
      ["portrait of an old farmer with a grey beard", "subject"],
    ],
  }),
  entry("woman-red-dress", "IMAGE", "a woman in a red dress walking in the rain", {
    exact: [
      "A woman in a red dress walking in the rain",
      "a woman in a red dress, walking in the rain",
    ],
    paraphrase: ["woman in red dress walks in rain", "walking in the rain, a woman in a red dress"],
    near: [
      ["a woman in a blue dress walking in the rain", "colour"],
      ["a man in a red dress walking in the rain", "subject"],
      ["a woman in a red dress dancing in the rain", "action"],
    ],
  }),
  entry("astronaut-horse", "IMAGE", "an astronaut riding a horse on the moon", {
    exact: ["An astronaut riding a horse on the moon", "an astronaut riding a horse on the moon!!"],
    paraphrase: ["astronaut rides a horse on the moon", "on the moon, an astronaut riding a horse"],
    near: [
      ["an astronaut riding a horse on mars", "place"],
      ["an astronaut riding a camel on the moon", "subject"],
      ["a cowboy riding a horse on the moon", "subject"],
    ],
  }),
  entry("children-kites", "IMAGE", "two children flying kites on a hill", {
    exact: ["Two children flying kites on a hill", "two children flying kites on a hill."],
    paraphrase: ["2 children flying kites on a hill", "two children fly kites on hills"],
    near: [
      ["three children flying kites on a hill", "count"],
      ["two children flying kites on a beach", "place"],
      ["two children flying drones on a hill", "subject"],
    ],
  }),
  entry("chef-kitchen", "IMAGE", "a chef cooking pasta in a busy restaurant kitchen", {
    exact: [
      "A chef cooking pasta in a busy restaurant kitchen",
      "a chef cooking pasta in a busy restaurant kitchen.",
    ],
    paraphrase: [
      "chef cooks pasta in a busy restaurant kitchen",
      "chefs cooking pasta in busy restaurant kitchens",
    ],
    near: [
      ["a chef cooking sushi in a busy restaurant kitchen", "subject"],
      ["a chef cooking pasta in a quiet home kitchen", "place"],
    ],
  }),
  entry("samurai-bamboo", "IMAGE", "a samurai standing in a bamboo forest, ink painting", {
    exact: [
      "A samurai standing in a bamboo forest, ink painting",
      "a samurai standing in a bamboo forest - ink painting",
    ],
    paraphrase: [
      "ink painting of a samurai standing in a bamboo forest",
      "samurai stands in a bamboo forest, ink painting",
    ],
    near: [
      ["a samurai standing in a bamboo forest, oil painting", "style"],
      ["a ninja standing in a bamboo forest, ink painting", "subject"],
      ["a samurai standing in a pine forest, ink painting", "place"],
    ],
  }),
  entry("girl-umbrella", "IMAGE", "a little girl with a yellow umbrella, anime style", {
    exact: [
      "A little girl with a yellow umbrella, anime style",
      "a little girl with a yellow umbrella (anime style)",
    ],
    paraphrase: [
      "anime style, a little girl with a yellow umbrella",
      "little girl with yellow umbrella in anime style",
    ],
    near: [
      ["a little girl with a pink umbrella, anime style", "colour"],
      ["a little boy with a yellow umbrella, anime style", "subject"],
      ["a little girl with a yellow umbrella, pixel art", "style"],
    ],
  }),
  entry("knight-dragon", "IMAGE", "a knight fighting a dragon", {
    exact: ["A knight fighting a dragon", "a knight fighting a dragon."],
    paraphrase: ["knights fighting dragons", "a knight fights a dragon"],
    near: [
      ["a knight riding a dragon", "action"],
      ["a wizard fighting a dragon", "subject"],
      ["a knight fighting two dragons", "count"],
    ],
  }),
  // Images: places and landscapes
  entry("sunset-ocean", "IMAGE", "sunset over the ocean", {
    exact: ["Sunset over the ocean", "sunset over the ocean."],
    paraphrase: ["the ocean at sunset", "sunset above the ocean"],
    synonym: ["dusk over the sea"],
    near: [
      ["sunrise over the ocean", "time"],
      ["sunset over the desert", "place"],
    ],
  }),
  entry("mountain-lake", "IMAGE", "a mountain lake with pine trees, morning mist", {
    exact: [
      "A mountain lake with pine trees, morning mist",
      "a mountain lake with pine trees morning mist",
    ],
    paraphrase: [
      "morning mist, a mountain lake with pine trees",
      "mountain lakes with pine tree, morning mist",
    ],
    near: [
      ["a mountain lake with palm trees, morning mist", "subject"],
      ["a mountain lake with pine trees, evening mist", "time"],
    ],
  }),
  entry("castle-hill", "IMAGE", "a medieval castle on a hill", {
    exact: ["A medieval castle on a hill", "a medieval castle on a hill."],
    paraphrase: ["medieval castles on hills", "on a hill, a medieval castle"],
    near: [
      ["a medieval castle under a hill", "place"],
      ["a modern castle on a hill", "attribute"],
      ["a medieval church on a hill", "subject"],
    ],
  }),
  entry("cabin-woods", "IMAGE", "a cozy cabin in the woods at night, warm light from the windows", {
    exact: [
      "A cozy cabin in the woods at night, warm light from the windows",
      "a cozy cabin in the woods at night; warm light from the windows",
    ],
    paraphrase: [
      "cozy cabin in woods at night, warm light from windows",
      "at night, a cozy cabin in the woods with warm light from the windows",
    ],
    near: [
      ["a cozy cabin in the woods at noon, warm light from the windows", "time"],
      ["a cozy cabin in the desert at night, warm light from the windows", "place"],
      ["a cozy cabin in the woods at night, cold light from the windows", "attribute"],
    ],
  }),
  entry("lighthouse-storm", "IMAGE", "a lighthouse on a cliff during a storm", {
    exact: ["A lighthouse on a cliff during a storm", "a lighthouse on a cliff during a storm!"],
    paraphrase: ["lighthouse on a cliff in a storm", "lighthouses on cliffs during storms"],
    near: [
      ["a lighthouse on a cliff on a calm day", "time"],
      ["a windmill on a cliff during a storm", "subject"],
    ],
  }),
  entry("cyberpunk-city", "IMAGE", "a cyberpunk city street at night with neon signs and rain", {
    exact: [
      "A cyberpunk city street at night with neon signs and rain",
      "a cyberpunk city street at night, with neon signs and rain",
    ],
    paraphrase: [
      "cyberpunk city streets at night with neon sign and rain",
      "at night a cyberpunk city street with rain and neon signs",
    ],
    near: [
      ["a cyberpunk city street at noon with neon signs and rain", "time"],
      ["a victorian city street at night with neon signs and rain", "style"],
      ["a cyberpunk city street at night with neon signs and snow", "attribute"],
    ],
  }),
  entry("desert-dunes", "IMAGE", "sand dunes in the desert under a starry sky", {
    exact: [
      "Sand dunes in the desert under a starry sky",
      "sand dunes in the desert under a starry sky.",
    ],
    paraphrase: [
      "sand dune in desert under starry sky",
      "under a starry sky, sand dunes in the desert",
    ],
    near: [
      ["sand dunes in the desert under a cloudy sky", "attribute"],
      ["snow dunes in the arctic under a starry sky", "place"],
    ],
  }),
  entry("tokyo-street", "IMAGE", "a narrow street in tokyo with cherry blossoms", {
    exact: [
      "A narrow street in Tokyo with cherry blossoms",
      "a narrow street in tokyo, with cherry blossoms",
    ],
    paraphrase: [
      "narrow streets in tokyo with cherry blossom",
      "cherry blossoms in a narrow street in tokyo",
    ],
    near: [
      ["a narrow street in paris with cherry blossoms", "place"],
      ["a wide street in tokyo with cherry blossoms", "attribute"],
      ["a narrow street in tokyo with autumn leaves", "subject"],
    ],
  }),
  entry("waterfall-jungle", "IMAGE", "a waterfall in a tropical jungle", {
    exact: ["A waterfall in a tropical jungle", "a waterfall in a tropical jungle."],
    paraphrase: ["waterfalls in tropical jungles", "tropical jungle with a waterfall in it"],
    near: [
      ["a waterfall in a frozen forest", "place"],
      ["a river in a tropical jungle", "subject"],
    ],
  }),
  entry("aurora-lake", "IMAGE", "northern lights over a frozen lake", {
    exact: ["Northern lights over a frozen lake", "northern lights over a frozen lake!"],
    paraphrase: ["northern lights above a frozen lake", "a frozen lake under the northern lights"],
    near: [
      ["northern lights over a frozen lake, black and white photo", "style"],
      ["fireworks over a frozen lake", "subject"],
    ],
  }),
  // Images: objects, food, interiors
  entry("red-car", "IMAGE", "a red sports car", {
    exact: ["A red sports car", "a red sports car."],
    paraphrase: ["red sports cars", "a sports car, red"],
    near: [
      ["a blue sports car", "colour"],
      ["a red pickup truck", "subject"],
      ["a red vintage car", "attribute"],
    ],
  }),
  entry("coffee-cup", "IMAGE", "a cup of coffee on a wooden table, morning light", {
    exact: [
      "A cup of coffee on a wooden table, morning light",
      "a cup of coffee on a wooden table morning light",
    ],
    paraphrase: [
      "cups of coffee on wooden tables, morning light",
      "morning light, a cup of coffee on a wooden table",
    ],
    synonym: ["a mug of coffee on a timber table in the morning sun"],
    near: [
      ["a cup of tea on a wooden table, morning light", "subject"],
      ["a cup of coffee on a marble table, morning light", "attribute"],
      ["a cup of coffee on a wooden table, candle light", "attribute"],
    ],
  }),
  entry("pizza", "IMAGE", "a pepperoni pizza on a plate, food photography", {
    exact: [
      "A pepperoni pizza on a plate, food photography",
      "a pepperoni pizza on a plate - food photography",
    ],
    paraphrase: [
      "food photography of a pepperoni pizza on a plate",
      "pepperoni pizzas on plates, food photography",
    ],
    near: [
      ["a margherita pizza on a plate, food photography", "subject"],
      ["a pepperoni pizza on a plate, watercolor", "style"],
    ],
  }),
  entry("bookshelf", "IMAGE", "a cozy library with tall bookshelves and a fireplace", {
    exact: [
      "A cozy library with tall bookshelves and a fireplace",
      "a cozy library with tall bookshelves and a fireplace.",
    ],
    paraphrase: [
      "cozy library with a fireplace and tall bookshelves",
      "a cozy library, tall bookshelf, fireplace",
    ],
    near: [
      ["a cozy library with tall bookshelves and a piano", "subject"],
      ["a ruined library with tall bookshelves and a fireplace", "attribute"],
    ],
  }),
  entry("apples-bowl", "IMAGE", "three green apples in a glass bowl", {
    exact: ["Three green apples in a glass bowl", "three green apples in a glass bowl."],
    paraphrase: ["3 green apples in a glass bowl", "in a glass bowl, three green apples"],
    near: [
      ["three red apples in a glass bowl", "colour"],
      ["five green apples in a glass bowl", "count"],
      ["three green pears in a glass bowl", "subject"],
    ],
  }),
  entry("vintage-camera", "IMAGE", "a vintage camera on a leather bag, studio lighting", {
    exact: [
      "A vintage camera on a leather bag, studio lighting",
      "a vintage camera on a leather bag studio lighting",
    ],
    paraphrase: [
      "vintage cameras on leather bags, studio lighting",
      "studio lighting, a vintage camera on a leather bag",
    ],
    near: [
      ["a vintage typewriter on a leather bag, studio lighting", "subject"],
      ["a vintage camera in a leather bag, studio lighting", "place"],
    ],
  }),
  entry("cake", "IMAGE", "a chocolate birthday cake with candles", {
    exact: ["A chocolate birthday cake with candles", "a chocolate birthday cake, with candles"],
    paraphrase: [
      "chocolate birthday cakes with candles",
      "a birthday cake, chocolate, with candles",
    ],
    near: [
      ["a strawberry birthday cake with candles", "subject"],
      ["a chocolate wedding cake with candles", "attribute"],
    ],
  }),
  entry("bicycle-wall", "IMAGE", "an old bicycle leaning against a brick wall", {
    exact: [
      "An old bicycle leaning against a brick wall",
      "an old bicycle leaning against a brick wall.",
    ],
    paraphrase: [
      "old bicycles leaning against brick walls",
      "an old bicycle leans against a brick wall",
    ],
    near: [
      ["an old motorcycle leaning against a brick wall", "subject"],
      ["an old bicycle leaning against a wooden fence", "place"],
    ],
  }),
  // Images: styles, with the boilerplate people add
  entry(
    "fox-forest-long",
    "IMAGE",
    "a highly detailed digital painting of a fox in an autumn forest, golden hour, 4k, trending on artstation",
    {
      exact: [
        "A highly detailed digital painting of a fox in an autumn forest, golden hour, 4K, trending on ArtStation",
        "a highly detailed digital painting of a fox in an autumn forest golden hour 4k trending on artstation",
      ],
      paraphrase: [
        "highly detailed digital painting of foxes in an autumn forest, golden hour, 4k, trending on artstation",
        "golden hour, a fox in an autumn forest, highly detailed digital painting, 4k, trending on artstation",
      ],
      near: [
        [
          "a highly detailed digital painting of a deer in an autumn forest, golden hour, 4k, trending on artstation",
          "subject",
        ],
        [
          "a highly detailed digital painting of a fox in a winter forest, golden hour, 4k, trending on artstation",
          "time",
        ],
        [
          "a highly detailed pencil sketch of a fox in an autumn forest, golden hour, 4k, trending on artstation",
          "style",
        ],
      ],
    },
  ),
  entry(
    "robot-portrait-long",
    "IMAGE",
    "portrait of a friendly robot with big round eyes, pixar style, soft lighting, 8k, masterpiece",
    {
      exact: [
        "Portrait of a friendly robot with big round eyes, Pixar style, soft lighting, 8K, masterpiece",
        "portrait of a friendly robot with big round eyes; pixar style; soft lighting; 8k; masterpiece",
      ],
      paraphrase: [
        "pixar style portrait of a friendly robot with big round eyes, soft lighting, 8k, masterpiece",
        "friendly robots with big round eyes, portrait, pixar style, soft lighting, 8k, masterpiece",
      ],
      near: [
        [
          "portrait of an angry robot with big round eyes, pixar style, soft lighting, 8k, masterpiece",
          "attribute",
        ],
        [
          "portrait of a friendly dinosaur with big round eyes, pixar style, soft lighting, 8k, masterpiece",
          "subject",
        ],
        [
          "portrait of a friendly robot with big round eyes, claymation style, soft lighting, 8k, masterpiece",
          "style",
        ],
      ],
    },
  ),
  entry(
    "city-watercolor-long",
    "IMAGE",
    "watercolor painting of a venetian canal with gondolas, soft pastel colors, highly detailed",
    {
      exact: [
        "Watercolor painting of a Venetian canal with gondolas, soft pastel colors, highly detailed",
        "watercolor painting of a venetian canal with gondolas - soft pastel colors - highly detailed",
      ],
      paraphrase: [
        "watercolor painting of venetian canals with gondola, soft pastel colors, highly detailed",
        "a venetian canal with gondolas, watercolor painting, soft pastel colors, highly detailed",
      ],
      near: [
        [
          "oil painting of a venetian canal with gondolas, soft pastel colors, highly detailed",
          "style",
        ],
        [
          "watercolor painting of a venetian canal with gondolas, dark moody colors, highly detailed",
          "attribute",
        ],
        [
          "watercolor painting of an amsterdam canal with houseboats, soft pastel colors, highly detailed",
          "place",
        ],
      ],
    },
  ),
  entry("logo-minimal", "IMAGE", "minimalist logo of a mountain, flat design, black and white", {
    exact: [
      "Minimalist logo of a mountain, flat design, black and white",
      "minimalist logo of a mountain, flat design, black & white",
    ],
    paraphrase: [
      "minimalist mountain logo, flat design, black and white",
      "flat design, black and white, minimalist logo of a mountain",
    ],
    near: [
      ["minimalist logo of a wave, flat design, black and white", "subject"],
      ["minimalist logo of a mountain, flat design, blue and orange", "colour"],
    ],
  }),
  entry("pixel-knight", "IMAGE", "pixel art of a knight holding a sword", {
    exact: ["Pixel art of a knight holding a sword", "pixel art of a knight holding a sword."],
    paraphrase: ["pixel art knight holding a sword", "pixel art of knights holding swords"],
    near: [
      ["pixel art of a knight holding a shield", "subject"],
      ["oil painting of a knight holding a sword", "style"],
    ],
  }),
  entry(
    "isometric-room",
    "IMAGE",
    "isometric illustration of a gamer bedroom with a computer and plants",
    {
      exact: [
        "Isometric illustration of a gamer bedroom with a computer and plants",
        "isometric illustration of a gamer bedroom, with a computer and plants",
      ],
      paraphrase: [
        "isometric illustration of a gamer bedroom with plants and a computer",
        "isometric illustrations of gamer bedrooms with computers and plants",
      ],
      near: [
        ["isometric illustration of a gamer bedroom with a computer and cats", "subject"],
        ["isometric illustration of an office with a computer and plants", "place"],
      ],
    },
  ),
  entry("sticker-cat", "IMAGE", "cute sticker of a cat eating ramen, white border", {
    exact: [
      "Cute sticker of a cat eating ramen, white border",
      "cute sticker of a cat eating ramen white border",
    ],
    paraphrase: [
      "cute stickers of cats eating ramen, white border",
      "white border, cute sticker of a cat eating ramen",
    ],
    near: [
      ["cute sticker of a cat eating sushi, white border", "subject"],
      ["cute sticker of a panda eating ramen, white border", "subject"],
      ["cute sticker of a cat eating ramen, black border", "colour"],
    ],
  }),
  entry("mars-colony", "IMAGE", "a colony of domes on mars, science fiction concept art", {
    exact: [
      "A colony of domes on Mars, science fiction concept art",
      "a colony of domes on mars - science fiction concept art",
    ],
    paraphrase: [
      "science fiction concept art of a colony of domes on mars",
      "colonies of domes on mars, science fiction concept art",
    ],
    near: [
      ["a colony of domes on the moon, science fiction concept art", "place"],
      ["a colony of domes under the sea, science fiction concept art", "place"],
    ],
  }),
  entry("tree-seasons", "IMAGE", "a single oak tree in a field in winter", {
    exact: ["A single oak tree in a field in winter", "a single oak tree in a field in winter."],
    paraphrase: ["single oak tree in a field, winter", "in winter, a single oak tree in a field"],
    near: [
      ["a single oak tree in a field in summer", "time"],
      ["a single palm tree in a field in winter", "subject"],
      ["two oak trees in a field in winter", "count"],
    ],
  }),
  entry("mug-mockup", "IMAGE", "product photo of a white ceramic mug on a grey background", {
    exact: [
      "Product photo of a white ceramic mug on a grey background",
      "product photo of a white ceramic mug on a grey background.",
    ],
    paraphrase: [
      "product photo of a white ceramic mug on a gray background",
      "white ceramic mugs on grey backgrounds, product photo",
    ],
    near: [
      ["product photo of a black ceramic mug on a grey background", "colour"],
      ["product photo of a white ceramic vase on a grey background", "subject"],
    ],
  }),
  entry("bridge-fog", "IMAGE", "golden gate bridge in fog, black and white photo", {
    exact: [
      "Golden Gate Bridge in fog, black and white photo",
      "golden gate bridge in fog - black and white photo",
    ],
    paraphrase: [
      "black and white photo of the golden gate bridge in fog",
      "golden gate bridge in the fog, black and white photo",
    ],
    near: [
      ["golden gate bridge in fog, color photo", "style"],
      ["brooklyn bridge in fog, black and white photo", "subject"],
    ],
  }),
  entry("dragon-volcano", "IMAGE", "a dragon flying over a volcano", {
    exact: ["A dragon flying over a volcano", "a dragon flying over a volcano!"],
    paraphrase: ["dragons flying over volcanoes", "a dragon flies above a volcano"],
    near: [
      ["a dragon sleeping in a volcano", "action"],
      ["a phoenix flying over a volcano", "subject"],
    ],
  }),
  entry("robot-garden", "IMAGE", "a small robot watering plants in a greenhouse", {
    exact: [
      "A small robot watering plants in a greenhouse",
      "a small robot watering plants in a greenhouse.",
    ],
    paraphrase: [
      "small robots watering plants in greenhouses",
      "in a greenhouse, a small robot watering plants",
    ],
    near: [
      ["a giant robot watering plants in a greenhouse", "attribute"],
      ["a small robot harvesting plants in a greenhouse", "action"],
    ],
  }),
  entry("snowman", "IMAGE", "a snowman with a carrot nose and a red scarf", {
    exact: [
      "A snowman with a carrot nose and a red scarf",
      "a snowman, with a carrot nose and a red scarf",
    ],
    paraphrase: [
      "snowmen with carrot noses and red scarves",
      "a snowman with a red scarf and a carrot nose",
    ],
    near: [
      ["a snowman with a carrot nose and a green scarf", "colour"],
      ["a snowman with a carrot nose and a top hat", "subject"],
    ],
  }),
  entry("no-people-beach", "IMAGE", "an empty beach with no people at dawn", {
    exact: ["An empty beach with no people at dawn", "an empty beach with no people at dawn."],
    paraphrase: ["empty beaches with no people at dawn", "at dawn, an empty beach with no people"],
    near: [
      ["a crowded beach with people at dawn", "attribute"],
      ["an empty beach with no people at dusk", "time"],
    ],
  }),
  // Audio
  entry("lofi-rain", "AUDIO", "lo-fi hip hop beat with rain sounds, 80 bpm", {
    exact: [
      "Lo-fi hip hop beat with rain sounds, 80 BPM",
      "lo-fi hip hop beat with rain sounds 80 bpm",
    ],
    paraphrase: [
      "lo fi hip hop beats with rain sound, 80 bpm",
      "80 bpm lo-fi hip hop beat with rain sounds",
    ],
    near: [
      ["lo-fi hip hop beat with rain sounds, 120 bpm", "count"],
      ["lo-fi hip hop beat with ocean sounds, 80 bpm", "subject"],
      ["jazz beat with rain sounds, 80 bpm", "style"],
    ],
  }),
  entry(
    "epic-orchestra",
    "AUDIO",
    "epic orchestral music with choir and drums for a battle scene",
    {
      exact: [
        "Epic orchestral music with choir and drums for a battle scene",
        "epic orchestral music with choir and drums, for a battle scene",
      ],
      paraphrase: [
        "epic orchestral music for a battle scene with choir and drums",
        "epic orchestral music with choirs and drum for battle scenes",
      ],
      near: [
        ["calm orchestral music with choir and drums for a battle scene", "attribute"],
        ["epic orchestral music with choir and drums for a wedding scene", "subject"],
      ],
    },
  ),
  entry("piano-sad", "AUDIO", "a sad piano melody in a minor key", {
    exact: ["A sad piano melody in a minor key", "a sad piano melody in a minor key."],
    paraphrase: ["sad piano melodies in a minor key", "piano melody, sad, in a minor key"],
    near: [
      ["a happy piano melody in a major key", "attribute"],
      ["a sad violin melody in a minor key", "subject"],
    ],
  }),
  entry("voice-welcome", "AUDIO", "a warm female voice saying welcome to the museum", {
    exact: [
      "A warm female voice saying: welcome to the museum",
      "a warm female voice saying welcome to the museum.",
    ],
    paraphrase: [
      "warm female voice says welcome to the museum",
      "a warm female voice, saying welcome to the museum",
    ],
    near: [
      ["a warm male voice saying welcome to the museum", "subject"],
      ["a warm female voice saying welcome to the zoo", "subject"],
    ],
  }),
  entry("birds-forest", "AUDIO", "birds singing in a forest at dawn, ambient sound", {
    exact: [
      "Birds singing in a forest at dawn, ambient sound",
      "birds singing in a forest at dawn ambient sound",
    ],
    paraphrase: [
      "bird singing in forests at dawn, ambient sounds",
      "ambient sound of birds singing in a forest at dawn",
    ],
    near: [
      ["birds singing in a forest at night, ambient sound", "time"],
      ["frogs singing in a forest at dawn, ambient sound", "subject"],
    ],
  }),
  // Video
  entry("drone-coast", "VIDEO", "drone shot flying over a rocky coastline at sunset", {
    exact: [
      "Drone shot flying over a rocky coastline at sunset",
      "drone shot flying over a rocky coastline at sunset.",
    ],
    paraphrase: [
      "drone shot flying above a rocky coastline at sunset",
      "at sunset, drone shot flying over a rocky coastline",
    ],
    near: [
      ["drone shot flying over a sandy coastline at sunset", "attribute"],
      ["drone shot flying over a rocky coastline at midnight", "time"],
    ],
  }),
  entry("timelapse-city", "VIDEO", "timelapse of a city skyline from day to night", {
    exact: [
      "Timelapse of a city skyline from day to night",
      "timelapse of a city skyline, from day to night",
    ],
    paraphrase: [
      "timelapse of city skylines from day to night",
      "city skyline timelapse from day to night",
    ],
    near: [
      ["timelapse of a city skyline from night to day", "time"],
      ["timelapse of a mountain range from day to night", "subject"],
    ],
  }),
  entry("cat-yarn-video", "VIDEO", "slow motion video of a kitten playing with a ball of yarn", {
    exact: [
      "Slow motion video of a kitten playing with a ball of yarn",
      "slow motion video of a kitten playing with a ball of yarn.",
    ],
    paraphrase: [
      "slow motion video of kittens playing with balls of yarn",
      "slow motion video, a kitten plays with a ball of yarn",
    ],
    near: [
      ["slow motion video of a puppy playing with a ball of yarn", "subject"],
      ["slow motion video of a kitten sleeping on a ball of yarn", "action"],
    ],
  }),
  entry("waves-video", "VIDEO", "close-up of waves crashing on rocks, 4k video", {
    exact: [
      "Close-up of waves crashing on rocks, 4K video",
      "close-up of waves crashing on rocks 4k video",
    ],
    paraphrase: [
      "close up of waves crashing on rocks, 4k video",
      "close-up of a wave crashing on rocks, 4k video",
    ],
    near: [
      ["close-up of waves crashing on a pier, 4k video", "subject"],
      ["aerial view of waves crashing on rocks, 4k video", "attribute"],
    ],
  }),
  entry("dancer-video", "VIDEO", "a ballet dancer spinning on a stage under a spotlight", {
    exact: [
      "A ballet dancer spinning on a stage under a spotlight",
      "a ballet dancer spinning on a stage, under a spotlight",
    ],
    paraphrase: [
      "ballet dancers spinning on a stage under a spotlight",
      "under a spotlight, a ballet dancer spinning on a stage",
    ],
    near: [
      ["a ballet dancer jumping on a stage under a spotlight", "action"],
      ["a hip hop dancer spinning on a stage under a spotlight", "style"],
    ],
  }),
];

/** One request of a replay: the text sent and what a right answer from the cache is. */
export interface ReplayRequest {
  text: string;
  mediaType: MediaType;
  /** The base prompt it derives from. */
  promptId: string;
  kind: VariantKind | "base";
  /**
   * Requests with the same group may answer each other: a base prompt with its exact,
   * paraphrase and synonym variants form one group, each near-duplicate is a group of its own.
   */
  group: string;
}

export interface ReplayOptions {
  /** @defaultValue 1 */
  seed?: number;
  /** @defaultValue 1000 */
  requests?: number;
  /** Popularity of the prompt of rank r is proportional to 1 / r^s. @defaultValue 1.1 */
  zipfExponent?: number;
}

/**
 * Once a base prompt is drawn, which text is sent: mostly the prompt as it was, then a
 * reworded copy, sometimes something close but different.
 */
const KIND_MIX: ReadonlyArray<readonly [ReplayRequest["kind"], number]> = [
  ["base", 0.45],
  ["exact", 0.2],
  ["paraphrase", 0.15],
  ["synonym", 0.05],
  ["near-duplicate", 0.15],
];

/**
 * A replay of `requests` requests over CACHE_PROMPTS, the same for the same options: base
 * prompts drawn by a Zipf-like popularity (a few are asked for again and again, most rarely),
 * then one of their texts by KIND_MIX (a kind the prompt lacks falls back to the base text).
 */
export function replaySequence(opts: ReplayOptions = {}): ReplayRequest[] {
  const random = mulberry32(opts.seed ?? 1);
  const count = opts.requests ?? 1000;
  const s = opts.zipfExponent ?? 1.1;

  // Popularity ranks are a seeded shuffle, so the popular prompts are not always the same ones.
  const ranked = [...CACHE_PROMPTS];
  for (let i = ranked.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ranked[i], ranked[j]] = [ranked[j]!, ranked[i]!];
  }
  const weights = ranked.map((_, r) => 1 / Math.pow(r + 1, s));
  const pickPrompt = cumulative(ranked, weights);
  const pickKind = cumulative(
    KIND_MIX.map(([kind]) => kind),
    KIND_MIX.map(([, w]) => w),
  );

  return Array.from({ length: count }, () => {
    const prompt = pickPrompt(random());
    const kind = pickKind(random());
    const choices = kind === "base" ? [] : prompt.variants.filter((v) => v.kind === kind);
    if (choices.length === 0) {
      return {
        text: prompt.prompt,
        mediaType: prompt.mediaType,
        promptId: prompt.id,
        kind: "base",
        group: prompt.id,
      };
    }
    const index = Math.floor(random() * choices.length);
    const variant = choices[index]!;
    return {
      text: variant.text,
      mediaType: prompt.mediaType,
      promptId: prompt.id,
      kind: variant.kind,
      group: variant.shouldHit ? prompt.id : `${prompt.id}~${prompt.variants.indexOf(variant)}`,
    };
  });
}

/** Picks from `items` by a uniform number in [0, 1), each with its share of `weights`. */
export function cumulative<T>(items: readonly T[], weights: readonly number[]): (u: number) => T {
  const total = weights.reduce((a, b) => a + b, 0);
  const bounds: number[] = [];
  let acc = 0;
  for (const w of weights) bounds.push((acc += w / total));
  return (u) => {
    const i = bounds.findIndex((b) => u < b);
    return items[i === -1 ? items.length - 1 : i]!;
  };
}

/** A small seeded PRNG (Mulberry32): uniform in [0, 1), the same sequence for the same seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
