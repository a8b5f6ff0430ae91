/**
 * The feature store: one interface, a MongoDB and a SQLite implementation, and the JSON form of
 * a feature that `saeflow show feature --json` prints.
 *
 * @module
 */

export { DEFAULT_ANALYSIS, STATE_CHUNK_BYTES } from "./types.ts";
export type {
  AnalysisDoc,
  AnalysisKey,
  AnalysisRunInfo,
  AnalysisStatus,
  AnalyzerStateInfo,
  AnalyzerStateKey,
  DatasetDoc,
  FeatureFilter,
  FeatureListOptions,
  FeatureStore,
  FeatureSummary,
  LeaseOptions,
  ModelDoc,
  ReadFeaturesOptions,
  RemoveAnalysisResult,
  RemoveSaeResult,
  RunOutcome,
  SaeDoc,
} from "./types.ts";
export {
  DEFAULT_MONGO_TIMEOUT_MS,
  MongoFeatureStore,
  mongoHosts,
  type MongoStoreOptions,
  normalizeMongoUri,
} from "./mongo.ts";
export { SQLITE_FILE_NAME, SqliteFeatureStore, type SqliteStoreOptions } from "./sqlite.ts";
export { openStore, type OpenStoreOptions } from "./open.ts";
export { type FeatureJson, featureToJson, type SampleJson } from "./json.ts";
