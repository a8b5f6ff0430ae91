/**
 * Datasets as streams of text records, and tokenizers.
 *
 * @module
 */

export {
  type BadRowInfo,
  type DatasetConfig,
  DatasetSource,
  type DatasetStats,
  openDataset,
  type OpenDatasetOptions,
} from "./dataset.ts";
export {
  displayBytes,
  type LoadedTokenizer,
  loadTokenizer,
  specialTokenIds,
  type Tokenizer,
  type TokenizerSource,
  toLoadedTokenizer,
  vocabDisplayStrings,
} from "./tokenizer.ts";
