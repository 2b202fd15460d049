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
 * A text is NFKC-normalized, lower-cased and split into words at punctuation; English stop
 * words are dropped and the rest stemmed (Porter2, plus irregular plurals). The vector sums three
 * parts, each hashed with a sign into `dimensions` buckets, and is L2-normalized:
 * - the words: each stem at full weight and its character trigrams at a smaller one (quality
 *   tags such as "4k" or "highly detailed" weigh little);
 * - the prepositions of place and direction bound to their object ("on>sofa"), holding a fixed
 *   share of the weight whatever the prompt's length;
 * - the prompt's key: the set of its stems and of its colours and counts bound to the next word
 *   ("red>fox"), as one feature.
 *
 * What follows at a 0.85 threshold: the same words in another order, with or without stop
 * words, in singular or plural score about 1 and hit; dropping a preposition scores 0.89 and
 * hits ("sunset over the ocean", "ocean at sunset"); swapping the only preposition scores 0.79
 * and misses ("a cat on a sofa", "a cat under a sofa"); any other word changed gives another key
 * and about 0.67 at most, however long the prompt, so a different colour, subject, count or style
 * never hits. Hence no synonym and no typo hits either: trigrams only rank such prompts closer
 * than unrelated ones. Known false hits: one preposition swapped among several scores 0.9 or
 * more, and roles swapped without a colour or preposition to tell them ("a dog
 * chasing a cat", "a cat chasing a dog") score 1. Hash collisions add noise of about
 * 1/sqrt(dimensions) to the words part.
 */
export class LexicalEmbedder implements Embedder {
  readonly id: string;
  readonly dimensions: number;
  /** What each token adds, by token: prompts reuse a small vocabulary. */
  private readonly tokens = new Map<string, Token>();

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
    const relations: string[] = [];
    const key: string[] = [];
    let contentMass = 0;
    for (const clause of clauses(text)) {
      // Bindings stay inside a clause: "…, black and white, minimalist logo" binds nothing across
      // the comma, so moving a clause keeps them.
      let pending: string[] = [];
      let attribute: string | undefined;
      for (const token of clause) {
        const t = this.token(token);
        if (t.kind === "stop") continue;
        if (t.kind === "relation") {
          pending.push(t.word);
          continue;
        }
        this.addAll(acc, t.index, t.value);
        contentMass += t.weight * t.weight;
        if (t.kind === "tag") continue;
        key.push(t.word);
        // A preposition and its object, a colour or count and what it qualifies: they move
        // together when a prompt is reworded, and they tell "on a sofa" from "under a sofa" and
        // "blue butterfly, yellow flower" from "yellow butterfly, blue flower".
        for (const relation of pending) relations.push(`${relation}>${t.word}`);
        pending = [];
        if (attribute !== undefined) key.push(`${attribute}>${t.word}`);
        attribute = t.attribute ? t.word : undefined;
      }
      relations.push(...pending);
    }

    // The prepositions together hold a fixed share of the prompt's weight, whatever its length,
    // so swapping "on" for "under" costs the same in a short prompt as in a long one.
    const relationWeight = Math.sqrt(
      (RELATION_SHARE * Math.max(contentMass, 1)) / relations.length,
    );
    for (const relation of relations) this.add(acc, relation, SEED_WORD, relationWeight);

    if (contentMass === 0 && relations.length === 0) {
      // Nothing left (only stop words or punctuation): the text itself, so the vector is still a
      // unit vector and equal texts still match.
      this.add(acc, text.toLowerCase().trim().replace(/\s+/g, " "), SEED_RAW, 1);
    } else if (key.length > 0) {
      // The set of words and bindings, as one feature: prompts with the same words agree on it,
      // and a prompt with any other word loses its weight, however long both are.
      scale(acc, 1 / norm(acc));
      const set = [...new Set(key)].sort().join(" ");
      this.add(acc, set, SEED_KEY, KEY_WEIGHT);
    }

    const n = norm(acc);
    const out = new Array<number>(this.dimensions).fill(0);
    // Unreachable in practice (a single feature cannot cancel itself), but never a zero vector.
    if (!(n > 0)) {
      out[0] = 1;
      return out;
    }
    for (let i = 0; i < acc.length; i++) out[i] = acc[i]! / n;
    return out;
  }

  private token(token: string): Token {
    let t = this.tokens.get(token);
    if (t === undefined) {
      t = this.describe(token);
      // The bound keeps odd input (random strings, long non-English words) from growing it forever.
      if (this.tokens.size >= TOKEN_CACHE_SIZE) this.tokens.clear();
      this.tokens.set(token, t);
    }
    return t;
  }

  private describe(token: string): Token {
    const none = { index: [], value: [], weight: 0, attribute: false };
    if (STOP_WORDS.has(token)) return { kind: "stop", word: token, ...none };
    const relation = RELATIONS.get(token);
    if (relation !== undefined) return { kind: "relation", word: relation, ...none };

    const tag = QUALITY_TAGS.has(token);
    const attribute = ATTRIBUTES.has(token) || /^\d+$/.test(token);
    const weight = tag ? QUALITY_TAG_WEIGHT : 1;
    const word = singular(token) ?? (/^[a-z]+$/.test(token) ? stem(token) : token);
    // The word itself, then its character trigrams with `<` `>` marking its edges.
    const padded = `<${word}>`;
    const grams: string[] = [];
    for (let i = 0; i + 3 <= padded.length; i++) grams.push(padded.slice(i, i + 3));
    if (grams.length === 0) grams.push(padded);
    const gramWeight = (weight * GRAM_SHARE) / Math.sqrt(grams.length);
    const index: number[] = [];
    const value: number[] = [];
    const push = (feature: string, seed: number, w: number) => {
      const h = hash(feature, seed);
      index.push(h % this.dimensions);
      value.push(signed(h, w));
    };
    push(word, SEED_WORD, weight * WORD_SHARE);
    for (const gram of grams) push(gram, SEED_GRAM, gramWeight);
    return { kind: tag ? "tag" : "content", word, index, value, weight, attribute };
  }

  private add(acc: Float64Array, feature: string, seed: number, weight: number): void {
    const h = hash(feature, seed);
    acc[h % this.dimensions]! += signed(h, weight);
  }

  private addAll(acc: Float64Array, index: number[], value: number[]): void {
    for (let i = 0; i < index.length; i++) acc[index[i]!]! += value[i]!;
  }
}

/** A token's role and, for words, the signed weights it adds at hashed positions. */
interface Token {
  /** `tag`: a quality tag, a word of little weight and not part of the prompt's key. */
  kind: "stop" | "relation" | "content" | "tag";
  /** The stem; for a relation, its canonical preposition. */
  word: string;
  index: number[];
  value: number[];
  weight: number;
  /** A colour or a count, bound to the word after it. */
  attribute: boolean;
}

/** The top bit of a feature's hash picks its sign, so collisions cancel out on average. */
function signed(h: number, weight: number): number {
  return h & 0x80000000 ? -weight : weight;
}

function norm(v: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i]! * v[i]!;
  return Math.sqrt(sum);
}

function scale(v: Float64Array, factor: number): void {
  for (let i = 0; i < v.length; i++) v[i] = v[i]! * factor;
}

/** Bump when features, weights or hashing change: vectors of another version are not comparable. */
const VERSION = "v1";
const DEFAULT_DIMENSIONS = 384;
const TOKEN_CACHE_SIZE = 50_000;

/** Shares of a word's squared weight: the whole word decides, trigrams only soften near-misses. */
const WORD_SHARE = Math.sqrt(0.7);
const GRAM_SHARE = Math.sqrt(0.3);
/**
 * Weight of the key feature next to the words' unit vector: two prompts whose keys differ score
 * at most 1 / (1 + KEY_WEIGHT²) = 0.67.
 */
const KEY_WEIGHT = Math.SQRT1_2;
/**
 * Squared weight of all prepositions relative to the other words. With the same key, swapping
 * the only preposition for another leaves the words at 1 / (1 + share) = 0.69 and the vectors at
 * 0.79, below a 0.85 threshold; dropping it leaves 1 / sqrt(1 + share) = 0.83 and 0.89, above.
 */
const RELATION_SHARE = 0.45;
/** Quality tags say little about what is in the picture; they are not part of the key either. */
const QUALITY_TAG_WEIGHT = 0.35;

const SEED_WORD = 0x2f1b5a3d;
const SEED_GRAM = 0x7c0de9e1;
const SEED_RAW = 0x51ab0a7d;
const SEED_KEY = 0x3e9d04c7;

/**
 * Lower-case NFKC words, numbers and single emoji. Apostrophes vanish ("fox's" → "foxs", which
 * stems to "fox"); every other punctuation or symbol character separates words.
 */
export function tokenize(text: string): string[] {
  return clauses(text).flat();
}

/** The tokens of each clause, clauses being separated by punctuation such as `,` `;` ` - `. */
function clauses(text: string): string[][] {
  // NFKC leaves ASCII as it is, and in ASCII the Unicode classes are just letters and digits.
  const ascii = ASCII.test(text);
  const normalized = (ascii ? text : text.normalize("NFKC")).toLowerCase().replace(APOSTROPHES, "");
  return normalized
    .split(CLAUSE_BREAK)
    .map((clause) =>
      (clause.match(ascii ? ASCII_TOKEN : TOKEN) ?? []).map((t) => NUMBERS.get(t) ?? t),
    );
}

// Not a hyphen inside a word ("lo-fi") nor a decimal point.
const CLAUSE_BREAK = /[,;:!?()[\]{}|\n\u2013\u2014]|\s-+\s|\.(?!\d)/;
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
    "a an the and or but if then else of at by for with as is am are was were be been " +
    "being have has had having do does did doing this that these those it its itself he him his " +
    "she her hers they them their theirs we us our ours you your yours i me my myself who whom " +
    "whose which what where when why how there here so than too very just also only own same " +
    "other such some any each both all more most could will would shall should may might must " +
    "about again further once while during before after until out s t"
  ).split(" "),
);

/** Prepositions of place and direction, folded into a few canonical ones. */
const RELATIONS = new Map<string, string>([
  ...["on", "onto", "upon", "atop"].map((w) => [w, "on"] as const),
  ...["in", "inside", "into", "within"].map((w) => [w, "in"] as const),
  ...["over", "above"].map((w) => [w, "above"] as const),
  ...["under", "below", "beneath", "underneath"].map((w) => [w, "below"] as const),
  ...["behind"].map((w) => [w, "behind"] as const),
  ...["beside", "near", "next"].map((w) => [w, "beside"] as const),
  ...["between", "among", "amid"].map((w) => [w, "between"] as const),
  ...["outside"].map((w) => [w, "outside"] as const),
  ...["to", "toward", "towards"].map((w) => [w, "to"] as const),
  ...["through", "across", "along", "around", "against", "from", "up", "down"].map(
    (w) => [w, w] as const,
  ),
]);

/** Colours, bound in the key to the word they qualify ("grey" is folded into "gray"). */
const ATTRIBUTES = new Set(
  (
    "red orange yellow green blue purple violet pink brown black white gray grey golden gold " +
    "silver teal cyan magenta beige turquoise crimson navy"
  ).split(" "),
);

/** Image-prompt boilerplate. */
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
    "cactus:cacti gray:grey snowman:snowmen fisherman:fishermen fireman:firemen " +
    "policeman:policemen businessman:businessmen horseman:horsemen gentleman:gentlemen"
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

/** Endings that are always an irregular plural, also in compounds ("bookshelves"). */
const IRREGULAR_ENDINGS: ReadonlyArray<readonly [string, string]> = [
  ["women", "woman"],
  ["children", "child"],
  ["shelves", "shelf"],
  ["knives", "knife"],
  ["wolves", "wolf"],
];

/** The singular of an irregular plural (kept whole, not stemmed), if the token is one. */
function singular(token: string): string | undefined {
  const known = IRREGULAR.get(token);
  if (known !== undefined) return known;
  for (const [plural, one] of IRREGULAR_ENDINGS) {
    if (token.endsWith(plural)) return token.slice(0, -plural.length) + one;
    // The singular compound stays whole too ("pocketknife", not Porter2's "pocketknif").
    if (token.endsWith(one)) return token;
  }
  return undefined;
}
