// DataLoaderLite's batching from build-nanogpt's train_gpt2.py, over token arrays however they
// are stored: contiguous (B, T) windows, rank r of n reading every n-th window, moving to the next
// shard (wrapping) when one runs out. No file access here (loader.ts reads .npy shards from disk;
// a web page hands it arrays), so it runs in Node and in a browser alike.

export interface Batch {
  /** Inputs, B*T tokens row-major (B, T). */
  x: Int32Array;
  /** Targets: the same window shifted by one token. */
  y: Int32Array;
}

/** One shard: a name for messages and a way to get its tokens (called when the loader moves onto it). */
export interface TokenShard {
  name: string;
  tokens(): Uint16Array | Int32Array;
}

export interface BatchLoaderOptions {
  shards: readonly TokenShard[];
  /** Batch size and sequence length. */
  B: number;
  T: number;
  /** DDP rank and world size; default 0 and 1. */
  processRank?: number;
  numProcesses?: number;
  /** If given, every token must be below it (e.g. 50257, or the padded 50304 of the model). */
  vocabSize?: number;
}

export class BatchLoader {
  readonly B: number;
  readonly T: number;
  readonly processRank: number;
  readonly numProcesses: number;
  readonly sources: readonly TokenShard[];
  private readonly vocabSize: number | undefined;
  private tokens: Uint16Array | Int32Array = new Int32Array(0);
  private _currentShard = 0;
  private _currentPosition = 0;

  constructor(opts: BatchLoaderOptions) {
    this.B = opts.B;
    this.T = opts.T;
    this.processRank = opts.processRank ?? 0;
    this.numProcesses = opts.numProcesses ?? 1;
    this.vocabSize = opts.vocabSize;
    for (const [k, v] of [['B', this.B], ['T', this.T], ['numProcesses', this.numProcesses]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`DataLoaderLite: ${k} must be a positive integer, got ${v}`);
    }
    if (!Number.isInteger(this.processRank) || this.processRank < 0 || this.processRank >= this.numProcesses) {
      throw new Error(`DataLoaderLite: processRank must be in [0, ${this.numProcesses}), got ${this.processRank}`);
    }
    if (opts.shards.length === 0) throw new Error('DataLoaderLite: no shards to read');
    this.sources = opts.shards;
    this.reset();
  }

  get currentShard(): number {
    return this._currentShard;
  }
  get currentPosition(): number {
    return this._currentPosition;
  }

  reset(): void {
    this._currentShard = 0;
    this.tokens = this.load(this.sources[0]!);
    this._currentPosition = this.B * this.T * this.processRank;
  }

  /** Where the loader stands, for checkpoints (restore() continues from exactly here). */
  state(): { shard: number; position: number } {
    return { shard: this._currentShard, position: this._currentPosition };
  }

  restore(state: { shard: number; position: number }): void {
    if (!Number.isInteger(state.shard) || state.shard < 0 || state.shard >= this.sources.length) {
      throw new Error(`DataLoaderLite.restore: shard ${state.shard} is out of range (${this.sources.length} shards); the data dir changed since the checkpoint`);
    }
    this._currentShard = state.shard;
    this.tokens = this.load(this.sources[state.shard]!);
    if (!Number.isInteger(state.position) || state.position < 0 || state.position + this.B * this.T + 1 > this.tokens.length) {
      throw new Error(`DataLoaderLite.restore: position ${state.position} does not fit shard ${this.sources[state.shard]!.name} (${this.tokens.length} tokens)`);
    }
    this._currentPosition = state.position;
  }

  /** Next (x, y) window; x = buf[:-1], y = buf[1:] with buf = tokens[pos : pos + B*T + 1]. */
  nextBatch(): Batch {
    const n = this.B * this.T;
    const pos = this._currentPosition;
    const x = new Int32Array(n);
    const y = new Int32Array(n);
    const t = this.tokens;
    for (let i = 0; i < n; i++) {
      x[i] = t[pos + i]!;
      y[i] = t[pos + i + 1]!;
    }
    this._currentPosition += n * this.numProcesses;
    // If loading the next batch would be out of bounds, advance to the next shard.
    if (this._currentPosition + (n * this.numProcesses + 1) > t.length) {
      this._currentShard = (this._currentShard + 1) % this.sources.length;
      this.tokens = this.load(this.sources[this._currentShard]!);
      this._currentPosition = n * this.processRank;
    }
    return { x, y };
  }

  private load(shard: TokenShard): Uint16Array | Int32Array {
    const path = shard.name;
    const tokens = shard.tokens();
    // build-nanogpt would hand torch a short buffer and fail in .view(B, T); say why instead.
    const need = this.B * this.T * this.processRank + this.B * this.T + 1;
    if (tokens.length < need) {
      throw new Error(
        `DataLoaderLite: ${path} has ${tokens.length} tokens, too few for one batch of B*T=${this.B * this.T} ` +
          `(+1) at rank ${this.processRank} (needs ${need}); use smaller B or T, or bigger shards`,
      );
    }
    if (this.vocabSize !== undefined) {
      for (let i = 0; i < tokens.length; i++) {
        const v = tokens[i]!;
        if (v >= this.vocabSize || v < 0) {
          throw new Error(`DataLoaderLite: ${path} holds token ${v} at index ${i}, outside the vocabulary [0, ${this.vocabSize}); was it made with another tokenizer?`);
        }
      }
    }
    return tokens;
  }
}
