/**
 * The viewer's JSON API over a {@linkcode FeatureStore}, read-only. Each route function returns
 * the JSON body or throws an {@linkcode HttpError}; `server.ts` does the routing and the
 * responses. The route table is documented on `createViewerHandler()`.
 *
 * @module
 */

import { type FeatureJson, featureToJson } from "../store/json.ts";
import {
  type AnalysisDoc,
  DEFAULT_ANALYSIS,
  type FeatureStore,
  type FeatureSummary,
  type SaeDoc,
} from "../store/types.ts";
import { TtlCache } from "./_cache.ts";
import { type FrequencyHistogram, frequencyHistogram } from "./_frequency.ts";
import { aliveParam, analysisParam, HttpError, intParam, parseListQuery } from "./_query.ts";
import { SummaryIndex } from "./_summaries.ts";

/** List pages that end within this many features are read from the store directly. */
const SHALLOW = 2000;

/** One SAE in the `/api/saes` listing. */
export interface SaeListEntry {
  series: string;
  name: string;
  d_sae: number;
  d_model: number;
  hook_point: string;
  model: string;
}

/** A feature in a list page: the store's summary with its frequency. */
export interface FeatureListEntry extends FeatureSummary {
  /** `act_times / n_analyzed_tokens` (0 when nothing was analyzed). */
  frequency: number;
}

/** Body of `GET /api/saes/:series/:name/features`. */
export interface FeatureListBody {
  series: string;
  name: string;
  analysis: string;
  sort: string;
  order: string;
  skip: number;
  limit: number;
  alive: boolean | null;
  q: string | null;
  /** Features matching the filters, before paging. */
  total: number;
  features: FeatureListEntry[];
}

/** Body of `GET /api/saes/:series/:name`. */
export interface SaeBody {
  sae: SaeDoc;
  /** Every analysis document of the SAE, ordered by name. */
  analyses: AnalysisDoc[];
  /** The analysis the counts are for (the requested one, else `default`, else the first). */
  analysis: string;
  counts: { total: number; alive: number; dead: number };
}

/** Body of `GET /api/saes/:series/:name/frequencies`. */
export interface FrequenciesBody extends FrequencyHistogram {
  series: string;
  name: string;
  analysis: string;
  /** Tokens the analysis covered (from its document, else from a feature). */
  n_analyzed_tokens: number;
}

/** How long repeated reads are cached, in milliseconds. */
export interface ApiOptions {
  /**
   * SAE, analysis and model documents; default 5000; 0 disables every cache. The summaries of a
   * complete analysis (deep pages, search, frequencies) are kept 12 times longer while the
   * feature count and the analysis document stay the same, so an interpretation written later
   * may show in lists after up to that long.
   */
  cacheMs?: number;
}

/** The API's route functions over one store. */
export class ViewerApi {
  readonly #store: FeatureStore;
  readonly #saes: TtlCache<SaeDoc | null>;
  readonly #analyses: TtlCache<AnalysisDoc[]>;
  readonly #vocab: TtlCache<string[] | undefined>;
  readonly #ttl: number;
  readonly #indexes = new Map<
    string,
    { at: number; ttl: number; fingerprint: string; index: Promise<SummaryIndex> }
  >();

  constructor(store: FeatureStore, options: ApiOptions = {}) {
    const ttl = options.cacheMs ?? 5000;
    this.#store = store;
    this.#saes = new TtlCache(ttl);
    this.#analyses = new TtlCache(ttl);
    this.#vocab = new TtlCache(ttl * 12, 4);
    this.#ttl = ttl;
  }

  /** `GET /api/saes`. */
  async listSaes(): Promise<{ saes: SaeListEntry[] }> {
    const saes = await this.#store.listSaes();
    return {
      saes: saes.map((s) => ({
        series: s.series,
        name: s.name,
        d_sae: s.d_sae,
        d_model: s.d_model,
        hook_point: s.hook_point,
        model: s.model,
      })),
    };
  }

  /** `GET /api/saes/:series/:name`. */
  async sae(series: string, name: string, params: URLSearchParams): Promise<SaeBody> {
    const sae = await this.#sae(series, name);
    const analysis = await this.#analysis(sae, analysisParam(params));
    const filter = { series, name, analysis };
    const [total, alive] = await Promise.all([
      this.#store.countFeatures(filter),
      this.#store.countFeatures({ ...filter, alive: true }),
    ]);
    return {
      sae,
      analyses: await this.#analysisDocs(series, name),
      analysis,
      counts: { total, alive, dead: total - alive },
    };
  }

  /** `GET /api/saes/:series/:name/features`. */
  async listFeatures(
    series: string,
    name: string,
    params: URLSearchParams,
  ): Promise<FeatureListBody> {
    const query = parseListQuery(params);
    const sae = await this.#sae(series, name);
    const analysis = await this.#analysis(sae, query.analysis);
    const filter = {
      series,
      name,
      analysis,
      ...(query.alive === undefined ? {} : { alive: query.alive }),
    };
    let total: number;
    let page: FeatureSummary[];
    const index = query.q !== undefined
      ? await this.#summaryIndex(series, name, analysis, true)
      : this.#ttl > 0
      ? await this.#summaryIndex(series, name, analysis, query.skip + query.limit > SHALLOW)
      : undefined;
    if (index) {
      ({ total, features: page } = index.page(query));
    } else {
      [total, page] = await Promise.all([
        this.#store.countFeatures(filter),
        this.#store.listFeatures({
          ...filter,
          sort: query.sort,
          order: query.order,
          skip: query.skip,
          limit: query.limit,
        }),
      ]);
    }
    return {
      series,
      name,
      analysis,
      sort: query.sort,
      order: query.order,
      skip: query.skip,
      limit: query.limit,
      alive: query.alive ?? null,
      q: query.q ?? null,
      total,
      features: page.map((f) => ({
        ...f,
        frequency: f.n_analyzed_tokens > 0 ? f.act_times / f.n_analyzed_tokens : 0,
      })),
    };
  }

  /** `GET /api/saes/:series/:name/features/:index`: the feature document of DESIGN.md. */
  async feature(series: string, name: string, index: number): Promise<FeatureJson> {
    const sae = await this.#sae(series, name);
    if (index >= sae.d_sae) {
      throw new HttpError(
        404,
        `Feature ${index} does not exist: SAE ${series}/${name} has ${sae.d_sae} features`,
      );
    }
    const [record, vocab] = await Promise.all([
      this.#store.getFeature(series, name, index),
      this.#vocab.get(sae.model, async () => (await this.#store.getModel(sae.model))?.vocab),
    ]);
    if (!record) {
      throw new HttpError(404, `Feature ${index} of SAE ${series}/${name} is not in the store`);
    }
    return featureToJson(record, vocab);
  }

  /** `GET /api/saes/:series/:name/frequencies`. */
  async frequencies(
    series: string,
    name: string,
    params: URLSearchParams,
  ): Promise<FrequenciesBody> {
    const bins = intParam(params, "bins", 50, 1, 1000);
    const sae = await this.#sae(series, name);
    const analysis = await this.#analysis(sae, analysisParam(params));
    const all = (await this.#summaryIndex(series, name, analysis, true))!.byIndex;
    const doc = (await this.#analysisDocs(series, name)).find((a) => a.name === analysis);
    return {
      series,
      name,
      analysis,
      n_analyzed_tokens: doc?.n_analyzed_tokens ?? all[0]?.n_analyzed_tokens ?? 0,
      ...frequencyHistogram(all, bins),
    };
  }

  /** `GET /api/saes/:series/:name/random`: a random feature index (alive by default). */
  async random(
    series: string,
    name: string,
    params: URLSearchParams,
  ): Promise<{ index: number }> {
    const sae = await this.#sae(series, name);
    const analysis = await this.#analysis(sae, analysisParam(params));
    const alive = params.get("alive") === null ? true : aliveParam(params);
    const filter = { series, name, analysis, ...(alive === undefined ? {} : { alive }) };
    const n = await this.#store.countFeatures(filter);
    if (n === 0) {
      throw new HttpError(
        404,
        `SAE ${series}/${name} has no such features in analysis ${analysis}`,
      );
    }
    const skip = Math.floor(Math.random() * n);
    const [pick] = await this.#store.listFeatures({ ...filter, skip, limit: 1 });
    if (!pick) throw new HttpError(404, `SAE ${series}/${name} changed while picking a feature`);
    return { index: pick.index };
  }

  /**
   * The summary index of an analysis: the cached one while its fingerprint (feature count and
   * analysis document) holds and it is young enough; else a fresh one when `load`, else none.
   */
  async #summaryIndex(
    series: string,
    name: string,
    analysis: string,
    load: boolean,
  ): Promise<SummaryIndex | undefined> {
    const key = JSON.stringify([series, name, analysis]);
    const [count, docs] = await Promise.all([
      this.#store.countFeatures({ series, name, analysis }),
      this.#analysisDocs(series, name),
    ]);
    const doc = docs.find((d) => d.name === analysis);
    const fingerprint = JSON.stringify([
      count,
      doc?.status,
      doc?.generation,
      doc?.finished_at,
      doc?.started_at,
    ]);
    const now = performance.now();
    const hit = this.#indexes.get(key);
    if (hit && hit.fingerprint === fingerprint && now - hit.at < hit.ttl) return hit.index;
    if (!load) return undefined;
    const index = this.#store.listFeatures({ series, name, analysis })
      .then((rows) => new SummaryIndex(rows));
    const settled = doc?.status === "complete" || doc?.status === "failed";
    const entry = { at: now, ttl: settled ? this.#ttl * 12 : this.#ttl, fingerprint, index };
    this.#indexes.delete(key);
    this.#indexes.set(key, entry);
    index.catch(() => {
      if (this.#indexes.get(key) === entry) this.#indexes.delete(key);
    });
    while (this.#indexes.size > 8) this.#indexes.delete(this.#indexes.keys().next().value!);
    return await index;
  }

  async #sae(series: string, name: string): Promise<SaeDoc> {
    const sae = await this.#saes.get(
      JSON.stringify([series, name]),
      () => this.#store.getSae(series, name),
    );
    if (!sae) throw new HttpError(404, `Unknown SAE ${series}/${name}`);
    return sae;
  }

  #analysisDocs(series: string, name: string): Promise<AnalysisDoc[]> {
    return this.#analyses.get(
      JSON.stringify([series, name]),
      () => this.#store.listAnalyses(series, name),
    );
  }

  /** The requested analysis (404 when unknown), else `default`, else the first by name. */
  async #analysis(sae: SaeDoc, requested: string | undefined): Promise<string> {
    const docs = await this.#analysisDocs(sae.series, sae.name);
    if (requested === undefined) {
      if (docs.length === 0 || docs.some((d) => d.name === DEFAULT_ANALYSIS)) {
        return DEFAULT_ANALYSIS;
      }
      return docs[0]!.name;
    }
    if (docs.some((d) => d.name === requested)) return requested;
    // Features written without an analysis document still count.
    const n = await this.#store.countFeatures({
      series: sae.series,
      name: sae.name,
      analysis: requested,
    });
    if (n > 0) return requested;
    const known = docs.map((d) => d.name).join(", ") || "none";
    throw new HttpError(
      404,
      `Unknown analysis ${
        JSON.stringify(requested)
      } of SAE ${sae.series}/${sae.name} (known: ${known})`,
    );
  }
}
