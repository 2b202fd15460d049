import stem from "wink-porter2-stemmer";
import { type Embedder, EmbedderError } from "./embedder";

export interface LexicalEmbedderOptions {
  /** Length of every vector. More dimensions, fewer hash collisions. @defaultValue 384 */
  dimensions?: number;
}

/**
 * A lexical embedding: the words of a prompt, not its meaning. It needs no model and no network,
 * so it is the cache's default.
 *
 * A text is lower-cased, NFKC-normalized and stripped of punctuation; its words become features
 * after dropping English stop words and stemming (Porter2, plus irregular plurals); each word
 * also adds its character trigrams at a smaller weight, so typos and inflections keep part of
 * their similarity. Features are hashed with a sign into `dimensions` buckets and the vector is
 * L2-normalized.
 *
 * What it catches: case, whitespace and punctuation, word order, stop words, plurals and other
 * inflections. What it does not: synonyms ("ocean" and "sea" share nothing), and a change of one
 * word among many ("… in a sunny kitchen, watercolor" with a different last word still scores
 * high). Three weightings push the score toward what changes a picture: colours and counts
 * weigh more than other words, quality tags ("4k", "highly detailed") much less, and the
 * prepositions of place ("on", "under", "above") share a fixed part of the prompt's weight, so
 * "a cat on a sofa" and "a cat under a sofa" stay apart while "sunset over the ocean" still
 * matches "ocean at sunset". Hash collisions add noise of about 1/sqrt(dimensions) to every
 * score (±0.05 at 384 dimensions).
 */
export class LexicalEmbedder implements Embedder {
  readonly id: string;
  readonly dimensions: number;
  /** What each token adds, by token: prompts reuse a small vocabulary. */
  private readonly tokens = new Map<string, TokenFeatures>();

  constructor(opts: LexicalEmbedderOptions = {}) {
    const dimensions = opts.dimensions ?? DEFAULT_DIMENSIONS;
    if (!Number.isInteger(dimensions) || dimensions < 16 || dimensions > 65_536) {
      throw new Error(
        `LexicalEmbedder needs a whole number of dimensions between 16 and 65536, not ${dimensions}.`,
      );
    }
    this.dimensions = dimensions;
    this.id = `lexical-${VERSION}-${dimensions}`;
  }

  async embed(texts: string[]): Promise<number[][]> {
    return texts.map((text, i) => {
      if (typeof text !== "string") {
        throw new EmbedderError(`lexical: text ${i} is a ${typeof text}, not a string`, false);
      }
      return this.embedText(text);
    });
  }

  /** The vector of one text, synchronously: the same as `(await embed([text]))[0]`. */
  embedText(text: string): number[] {
    const acc = new Float64Array(this.dimensions);
    const relations: TokenFeatures[] = [];
    let contentMass = 0;
    for (const token of tokenize(text)) {
      const features = this.features(token);
      if (features.kind === "stop") continue;
      if (features.kind === "relation") {
        relations.push(features);
        continue;
      }
      addFeatures(acc, features, 1);
      contentMass += features.mass;
    }
    // The prepositions together hold a fixed share of the prompt's weight, whatever its length,
    // so swapping "on" for "under" costs the same in a short prompt as in a long one.
    const relationWeight = Math.sqrt(
      (RELATION_SHARE * Math.max(contentMass, 1)) / relations.length,
    );
    for (const features of relations) addFeatures(acc, features, relationWeight);

    // Nothing left (only stop words or punctuation): the text itself, so the vector is still a
    // unit vector and equal texts still match.
    if (contentMass === 0 && relations.length === 0) {
      const raw = text.toLowerCase().trim().replace(/\s+/g, " ");
      addFeatures(acc, this.hashed("content", [raw], [1], SEED_RAW), 1);
    }

    let sum = 0;
    for (const x of acc) sum += x * x;
    const norm = Math.sqrt(sum);
    const out = new Array<number>(this.dimensions).fill(0);
    // Unreachable in practice (a single feature cannot cancel itself), but never a zero vector.
    if (!(norm > 0)) {
      out[0] = 1;
      return out;
    }
    for (let i = 0; i < acc.length; i++) out[i] = acc[i]! / norm;
    return out;
  }

  private features(token: string): TokenFeatures {
    let features = this.tokens.get(token);
    if (features === undefined) {
      features = this.describe(token);
      // The bound keeps odd input (random strings, long non-English words) from growing it forever.
      if (this.tokens.size >= TOKEN_CACHE_SIZE) this.tokens.clear();
      this.tokens.set(token, features);
    }
    return features;
  }

  private describe(token: string): TokenFeatures {
    if (STOP_WORDS.has(token)) return STOP;
    const relation = RELATIONS.get(token);
    if (relation !== undefined) return this.hashed("relation", [relation], [1], SEED_WORD);

    const weight = QUALITY_TAGS.has(token)
      ? QUALITY_TAG_WEIGHT
      : ATTRIBUTES.has(token) || /^\d+$/.test(token)
        ? ATTRIBUTE_WEIGHT
        : 1;
    const word = IRREGULAR.get(token) ?? (/^[a-z]+$/.test(token) ? stem(token) : token);
    // The word itself, then its character trigrams with `<` `>` marking its edges.
    const padded = `<${word}>`;
    const grams: string[] = [];
    for (let i = 0; i + 3 <= padded.length; i++) grams.push(padded.slice(i, i + 3));
    if (grams.length === 0) grams.push(padded);
    const gramWeight = (weight * GRAM_SHARE) / Math.sqrt(grams.length);
    const whole = this.hashed("content", [word], [weight * WORD_SHARE], SEED_WORD);
    const parts = this.hashed(
      "content",
      grams,
      grams.map(() => gramWeight),
      SEED_GRAM,
    );
    return {
      kind: "content",
      index: [...whole.index, ...parts.index],
      value: [...whole.value, ...parts.value],
      mass: weight * weight,
    };
  }

  private hashed(
    kind: TokenFeatures["kind"],
    features: string[],
    weights: number[],
    seed: number,
  ): TokenFeatures {
    const index: number[] = [];
    const value: number[] = [];
    features.forEach((feature, i) => {
      const h = hash(feature, seed);
      index.push(h % this.dimensions);
      // The top bit picks the sign, so collisions cancel out on average instead of piling up.
      value.push(h & 0x80000000 ? -weights[i]! : weights[i]!);
    });
    return { kind, index, value, mass: 0 };
  }
}

/** What one token adds to a vector: signed weights at hashed positions. */
interface TokenFeatures {
  kind: "stop" | "relation" | "content";
  index: number[];
  value: number[];
  /** Squared weight of a content word (1 for most words). */
  mass: number;
}

const STOP: TokenFeatures = { kind: "stop", index: [], value: [], mass: 0 };

function addFeatures(acc: Float64Array, features: TokenFeatures, scale: number): void {
  for (let i = 0; i < features.index.length; i++) {
    acc[features.index[i]!]! += features.value[i]! * scale;
  }
}

/** Bump when features, weights or hashing change: vectors of another version are not comparable. */
const VERSION = "v1";
const DEFAULT_DIMENSIONS = 384;
const TOKEN_CACHE_SIZE = 50_000;

/** Shares of a word's squared weight: the whole word decides, trigrams only soften near-misses. */
const WORD_SHARE = Math.sqrt(0.7);
const GRAM_SHARE = Math.sqrt(0.3);
/**
 * Squared weight of all prepositions relative to the rest: swapping one for another (the only
 * one) gives 1 / (1 + share) = 0.8, below a 0.85 threshold; dropping it gives
 * 1 / sqrt(1 + share) ≈ 0.89, above it.
 */
const RELATION_SHARE = 0.25;
const QUALITY_TAG_WEIGHT = 0.35;
/** Colours and counts change a whole picture: "a red car" and "a blue car" must stay apart. */
const ATTRIBUTE_WEIGHT = 1.5;

const SEED_WORD = 0x2f1b5a3d;
const SEED_GRAM = 0x7c0de9e1;
const SEED_RAW = 0x51ab0a7d;

/**
 * Lower-case NFKC words, numbers and single emoji. Apostrophes vanish ("fox's" → "foxs", which
 * stems to "fox"); every other punctuation or symbol character separates words.
 */
export function tokenize(text: string): string[] {
  // NFKC leaves ASCII as it is, and in ASCII the Unicode classes are just letters and digits.
  const ascii = ASCII.test(text);
  const normalized = (ascii ? text : text.normalize("NFKC")).toLowerCase().replace(APOSTROPHES, "");
  const tokens = normalized.match(ascii ? ASCII_TOKEN : TOKEN) ?? [];
  return tokens.map((t) => NUMBERS.get(t) ?? t);
}

const ASCII = /^[^\u0080-\uffff]*$/;
const ASCII_TOKEN = /[a-z0-9]+/g;
const APOSTROPHES = /['\u2019\u02bc`]/g;
// Letters with their combining marks, digits, or one pictographic emoji.
const TOKEN = /[\p{L}\p{M}\p{N}]+|\p{Extended_Pictographic}/gu;

/** 32-bit FNV-1a over UTF-16 code units, finished with murmur3's avalanche. */
function hash(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * English function words. Words that change a picture stay out of this list: negations ("no",
 * "not", "without"), counts, and the prepositions of place (see RELATIONS).
 */
const STOP_WORDS = new Set(
  (
    "a an the and or but if then else of at by for with to from as is am are was were be been " +
    "being have has had having do does did doing this that these those it its itself he him his " +
    "she her hers they them their theirs we us our ours you your yours i me my myself who whom " +
    "whose which what where when why how there here so than too very just also only own same " +
    "other such some any each both all more most could will would shall should may might must " +
    "about again further once while during before after until out s t"
  ).split(" "),
);

/** Prepositions of place, folded into a few canonical ones and sharing RELATION_SHARE. */
const RELATIONS = new Map<string, string>([
  ...["on", "onto", "upon", "atop"].map((w) => [w, "on"] as const),
  ...["in", "inside", "into", "within"].map((w) => [w, "in"] as const),
  ...["over", "above"].map((w) => [w, "above"] as const),
  ...["under", "below", "beneath", "underneath"].map((w) => [w, "below"] as const),
  ...["behind"].map((w) => [w, "behind"] as const),
  ...["beside", "near", "next"].map((w) => [w, "beside"] as const),
  ...["between", "among", "amid"].map((w) => [w, "between"] as const),
  ...["outside"].map((w) => [w, "outside"] as const),
  ...["through", "across", "along", "around", "against", "toward", "towards", "up", "down"].map(
    (w) => [w, w] as const,
  ),
]);

/** Colours, as words ("grey" is folded into "gray" by IRREGULAR). */
const ATTRIBUTES = new Set(
  (
    "red orange yellow green blue purple violet pink brown black white gray grey golden gold " +
    "silver teal cyan magenta beige turquoise crimson navy"
  ).split(" "),
);

/** Image-prompt boilerplate that says little about what is in the picture. */
const QUALITY_TAGS = new Set(
  (
    "4k 8k 16k hd uhd hdr highly detailed intricate masterpiece best quality high resolution " +
    "highres sharp focus trending artstation award winning ultra"
  ).split(" "),
);

const NUMBERS = new Map(
  (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen " +
    "fifteen sixteen seventeen eighteen nineteen twenty"
  )
    .split(" ")
    .map((w, i) => [w, String(i)] as const),
);

/** Plurals Porter2 leaves apart from their singular, and one spelling variant. */
const IRREGULAR = new Map<string, string>([
  ...(
    "man:men woman:women child:children person:people mouse:mice goose:geese tooth:teeth " +
    "foot:feet ox:oxen wolf:wolves leaf:leaves knife:knives shelf:shelves elf:elves " +
    "calf:calves half:halves loaf:loaves scarf:scarves thief:thieves life:lives wife:wives " +
    "cactus:cacti gray:grey"
  )
    .split(" ")
    .flatMap((pair) => {
      const [singular, plural] = pair.split(":") as [string, string];
      return [
        [singular, singular],
        [plural, singular],
      ] as const;
    }),
]);
