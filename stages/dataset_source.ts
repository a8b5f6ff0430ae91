/**
 * The dataset source stage: the head of the pipeline, one or more datasets as one
 * `ReadableStream<TextRecord>`.
 *
 * @module
 */

import { ConfigError } from "../lib/errors.ts";
import type { TextRecord } from "../lib/types.ts";
import {
  type DatasetConfig,
  type DatasetSource,
  openDataset,
  type OpenDatasetOptions,
} from "../lib/data/mod.ts";

/** Options of {@linkcode datasetSource}; every field is optional. */
export interface DatasetSourceOptions extends OpenDatasetOptions {
  /**
   * One positive weight per dataset (the seed's `sample_weights`). Default: none, datasets are
   * read one after the other in config order. With weights, datasets are interleaved
   * deterministically (smooth weighted round-robin: over any stretch, dataset `i` gives about
   * `w_i / Σw` of the records); a dataset that ends drops out and the others go on.
   */
  sampleWeights?: number[];
}

async function* concatenated(sources: DatasetSource[]): AsyncGenerator<TextRecord> {
  for (const source of sources) {
    const reader = source.getReader();
    let done = false;
    try {
      while (true) {
        const next = await reader.read();
        if (next.done) break;
        yield next.value;
      }
      done = true;
    } finally {
      if (done) reader.releaseLock();
      else await reader.cancel();
    }
  }
}

async function* interleaved(
  sources: DatasetSource[],
  weights: number[],
): AsyncGenerator<TextRecord> {
  const readers = sources.map((s) => s.getReader());
  const active = readers.map((_, i) => i);
  const credit = weights.map(() => 0);
  try {
    while (active.length > 0) {
      let total = 0;
      let pick = active[0]!;
      for (const i of active) {
        credit[i]! += weights[i]!;
        total += weights[i]!;
        if (credit[i]! > credit[pick]!) pick = i;
      }
      credit[pick]! -= total;
      const next = await readers[pick]!.read();
      if (next.done) active.splice(active.indexOf(pick), 1);
      else yield next.value;
    }
  } finally {
    await Promise.all(readers.map((r) => r.cancel()));
  }
}

/**
 * Reads several datasets as one pull-based stream of {@linkcode TextRecord}s. Every dataset is
 * opened (path resolved, files listed) when the stream starts, so a configuration error in any
 * of them errors the stream before the first record; files are opened only as they are read.
 * Cancelling the stream closes the file being read.
 *
 * @param datasets The datasets, in config order; `source` of each record is its dataset's name.
 * @param options Sample weights, bad-row reporting, Hub options.
 * @returns The records of all datasets.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { datasetSource } from "./dataset_source.ts";
 * const corpus = new URL("../fixtures/text/corpus.jsonl", import.meta.url).pathname;
 * const stream = datasetSource([{ name: "a", pathOrId: corpus }, { name: "b", pathOrId: corpus }]);
 * const records = await Array.fromAsync(stream);
 * assert.equal(records[0]!.source, "a");
 * assert.equal(records.at(-1)!.source, "b");
 * ```
 */
export function datasetSource(
  datasets: DatasetConfig[],
  options: DatasetSourceOptions = {},
): ReadableStream<TextRecord> {
  const { sampleWeights, ...openOptions } = options;
  let records: AsyncGenerator<TextRecord> | undefined;
  return new ReadableStream<TextRecord>({
    async start() {
      if (datasets.length === 0) throw new ConfigError("No dataset to read: the list is empty");
      if (
        sampleWeights !== undefined &&
        (sampleWeights.length !== datasets.length ||
          !sampleWeights.every((w) => Number.isFinite(w) && w > 0))
      ) {
        throw new ConfigError(
          `sample_weights: expected ${datasets.length} positive numbers (one per dataset), got ` +
            JSON.stringify(sampleWeights),
        );
      }
      const sources: DatasetSource[] = [];
      for (const config of datasets) {
        sources.push(await openDataset(config, { ...openOptions, highWaterMark: 0 }));
      }
      records = sampleWeights === undefined
        ? concatenated(sources)
        : interleaved(sources, sampleWeights);
    },
    async pull(controller) {
      const next = await records!.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel() {
      await records?.return(undefined);
    },
  }, { highWaterMark: 1 });
}
