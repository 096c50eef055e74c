// Public surface of the data module: npy token files, the GPT-2 tokenizer, fineweb.py-style sharding,
// Hub downloads, DataLoaderLite and progress bars. Nothing here imports the tensor engine.
export { npyHeader, encodeNpy, decodeNpy, readNpy, writeNpy, readTokens, parseNpyHeader, type NpyDtype, type NpyData, type NpyHeader } from './npy.js';
export { EOT, GPT2_VOCAB_SIZE, GPT2_SPLIT_PATTERN, Gpt2Tokenizer, StreamDecoder, gpt2Tokenizer } from './tokenizer.js';
export { BpeTokenizer, trainBpe, type BpeSpec } from './bpe.js';
export { GPT2_SPEC, describeTokenizer, sameTokenizer, specOf, tokenizerFromSpec, type Tokenizer, type TokenizerSpec } from './tokenizer-spec.js';
export { tokenizeDocuments, type TokenizedBatch, type TokenizeOptions } from './tokenize-pool.js';
export { writeShards, shardFileName, shardIdentity, readDataTokenizer, writeDataTokenizer, TOKENIZER_FILE, ShardWriter, type DocumentSource, type WriteShardsOptions, type ShardSummary } from './shards.js';
export { listHubFiles, downloadHubFile, resolveRevision, HubError, type HubFile, type HubOptions, type DownloadOptions } from './hub.js';
export { FineWebEduSource, EmbeddedCorpusSource, parquetTexts, parquetRowCount, type FineWebOptions } from './sources.js';
export { DataLoaderLite, listShards, type DataLoaderOptions } from './loader.js';
export { BatchLoader, type Batch, type BatchLoaderOptions, type TokenShard } from './batches.js';
export { ensureEmbeddedShards, embeddedShardSize, type EmbeddedOptions } from './embedded.js';
export { ProgressBar, formatAmount, formatDuration, type ProgressOptions, type ProgressUnit } from './progress.js';
