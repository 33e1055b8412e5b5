export { configSchema, isLoopbackHost, pinoLevel, euProviderTypes } from './schema.js';
export type { Config, ConfigInput, DestinationName, SourceName } from './schema.js';
export { configKeys, configJsonSchema, secretPaths, type ConfigKey } from './keys.js';
export {
  ConfigError,
  findConfigFile,
  formatProblems,
  getPath,
  loadConfigFile,
  parseConfigText,
  setPath,
  validateConfig,
  writeConfigFile,
  type ConfigProblem,
  type LoadedConfig,
} from './load.js';
export { SecretStore, SecretStoreError } from './secrets.js';
export {
  ENV_SECRETS,
  parseDatabaseUrl,
  resolveRuntime,
  RuntimeError,
  type Runtime,
  type RuntimeOverrides,
} from './runtime.js';
export { configReference } from './docs.js';
export { ConfigService, type ConfigView, type SecretStatus } from './service.js';
