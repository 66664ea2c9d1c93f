/**
 * Typed reading of the `keel.*` settings and their mapping onto the server's configuration.
 *
 * The server reads the same keys as `keel.toml` (docs/reference/configuration.md) from
 * `initializationOptions`, from `workspace/configuration` (section `keel`) and from
 * `workspace/didChangeConfiguration`. Editor settings are the last and strongest source, so
 * only settings the user actually set are sent: an unset setting must never override a value
 * from the workspace's `keel.toml` with a built-in default. That is why every engine setting
 * defaults to `null` / `""` in package.json and is dropped here when empty.
 */

/** The model tiers of docs/reference/configuration.md, plus `default` for every tier not named. */
export const MODEL_TIERS = ['default', 'architect', 'actuator', 'verifier', 'speculator'] as const;
export type ModelTier = (typeof MODEL_TIERS)[number];

export const MODES = ['cautious', 'balanced', 'yolo'] as const;
export type Mode = (typeof MODES)[number];

export type ForwardScope = 'session' | 'workspace' | 'off';

/** The `keel.*` settings after validation; `undefined` means "not set by the user". */
export interface KeelSettings {
  readonly serverPath: string | undefined;
  readonly python: string | undefined;
  readonly models: Partial<Record<ModelTier, string>>;
  readonly mode: Mode | undefined;
  readonly complexityK: number | undefined;
  readonly energyWeights: readonly number[] | undefined;
  readonly stabilityThreshold: number | undefined;
  readonly maxCost: number | undefined;
  readonly maxSteps: number | undefined;
  readonly maxAttempts: number | undefined;
  readonly confirmEdits: boolean;
  readonly previewInEditor: boolean;
  readonly forwardDiagnostics: ForwardScope;
}

/** The server-side shape: the keys of `keel.toml`, only those that are set. */
export interface ServerSettings {
  models?: Partial<Record<ModelTier, string>>;
  engine?: {
    mode?: Mode;
    complexity_k?: number;
    energy_weights?: number[];
    stability_threshold?: number;
    max_attempts?: number;
  };
  budget?: { max_cost?: number; max_steps?: number };
}

/** Reads one setting by its key below `keel.` (e.g. `models.default`). */
export type SettingGetter = (key: string) => unknown;

/** A problem with a setting, reported to the user once; the setting is then ignored. */
export interface SettingProblem {
  readonly key: string;
  readonly message: string;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

/** Reads and validates every `keel.*` setting; invalid values are dropped and reported. */
export function readSettings(get: SettingGetter): { settings: KeelSettings; problems: SettingProblem[] } {
  const problems: SettingProblem[] = [];
  const number = (key: string, opts: { integer?: boolean; min?: number; exclusiveMin?: boolean }): number | undefined => {
    const value = get(key);
    if (value === undefined || value === null || value === '') {
      return undefined;
    }
    const ok =
      typeof value === 'number' &&
      Number.isFinite(value) &&
      (!opts.integer || Number.isInteger(value)) &&
      (opts.min === undefined || (opts.exclusiveMin ? value > opts.min : value >= opts.min));
    if (!ok) {
      const kind = opts.integer ? 'an integer' : 'a number';
      const bound = opts.min === undefined ? '' : ` ${opts.exclusiveMin ? '>' : '>='} ${opts.min}`;
      problems.push({ key, message: `keel.${key} must be ${kind}${bound}; got ${JSON.stringify(value)}` });
      return undefined;
    }
    return value;
  };

  const models: Partial<Record<ModelTier, string>> = {};
  for (const tier of MODEL_TIERS) {
    const value = text(get(`models.${tier}`));
    if (value === undefined) {
      continue;
    }
    if (!/^[a-z][a-z0-9-]*:.+$/.test(value)) {
      problems.push({ key: `models.${tier}`, message: `keel.models.${tier} must be PROVIDER:MODEL (e.g. openai:gpt-4.1); got "${value}"` });
      continue;
    }
    models[tier] = value;
  }

  const modeRaw = text(get('mode'));
  let mode: Mode | undefined;
  if (modeRaw !== undefined) {
    if ((MODES as readonly string[]).includes(modeRaw)) {
      mode = modeRaw as Mode;
    } else {
      problems.push({ key: 'mode', message: `keel.mode must be one of ${MODES.join(', ')}; got "${modeRaw}"` });
    }
  }

  const weightsRaw = get('energyWeights');
  let energyWeights: number[] | undefined;
  if (weightsRaw !== undefined && weightsRaw !== null) {
    const valid =
      Array.isArray(weightsRaw) &&
      weightsRaw.length >= 3 &&
      weightsRaw.length <= 5 &&
      weightsRaw.every((w) => typeof w === 'number' && Number.isFinite(w) && w >= 0);
    if (valid) {
      energyWeights = weightsRaw as number[];
    } else {
      problems.push({ key: 'energyWeights', message: `keel.energyWeights must be 3 to 5 non-negative numbers (V_syn, V_str, V_log[, V_boot, V_sheaf]); got ${JSON.stringify(weightsRaw)}` });
    }
  }

  const forwardRaw = get('diagnostics.forward');
  const forwardDiagnostics: ForwardScope =
    forwardRaw === 'workspace' || forwardRaw === 'off' ? forwardRaw : 'session';

  const settings: KeelSettings = {
    serverPath: text(get('server.path')),
    python: text(get('python')),
    models,
    mode,
    complexityK: number('complexityK', { integer: true, min: 0 }),
    energyWeights,
    stabilityThreshold: number('stabilityThreshold', { min: 0, exclusiveMin: true }),
    maxCost: number('maxCost', { min: 0 }),
    maxSteps: number('maxSteps', { integer: true, min: 1 }),
    maxAttempts: number('maxAttempts', { integer: true, min: 1 }),
    confirmEdits: get('review.confirmEdits') === true,
    previewInEditor: get('review.previewInEditor') !== false,
    forwardDiagnostics,
  };
  return { settings, problems };
}

/** Maps settings onto the `keel.toml` shape the server reads; empty sections are left out. */
export function toServerSettings(settings: KeelSettings): ServerSettings {
  const out: ServerSettings = {};
  if (Object.keys(settings.models).length > 0) {
    out.models = { ...settings.models };
  }
  const engine: NonNullable<ServerSettings['engine']> = {};
  if (settings.mode !== undefined) {
    engine.mode = settings.mode;
  }
  if (settings.complexityK !== undefined) {
    engine.complexity_k = settings.complexityK;
  }
  if (settings.energyWeights !== undefined) {
    engine.energy_weights = [...settings.energyWeights];
  }
  if (settings.stabilityThreshold !== undefined) {
    engine.stability_threshold = settings.stabilityThreshold;
  }
  if (settings.maxAttempts !== undefined) {
    engine.max_attempts = settings.maxAttempts;
  }
  if (Object.keys(engine).length > 0) {
    out.engine = engine;
  }
  const budget: NonNullable<ServerSettings['budget']> = {};
  if (settings.maxCost !== undefined) {
    budget.max_cost = settings.maxCost;
  }
  if (settings.maxSteps !== undefined) {
    budget.max_steps = settings.maxSteps;
  }
  if (Object.keys(budget).length > 0) {
    out.budget = budget;
  }
  return out;
}

/**
 * The value for a `workspace/configuration` item: `keel` gives the whole shape, `keel.engine`
 * (or any dotted path below it) the matching part, anything else `undefined` (not ours).
 */
export function configurationFor(section: string | undefined, server: ServerSettings): unknown {
  if (section === undefined || !(section === 'keel' || section.startsWith('keel.'))) {
    return undefined;
  }
  let value: unknown = server;
  for (const part of section.split('.').slice(1)) {
    value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[part] : undefined;
  }
  return value ?? null;
}

/** Settings whose change needs a new server process (the others are pushed to the running one). */
export const RESTART_KEYS = ['keel.server.path', 'keel.python'] as const;

/**
 * Settings the server reads (sections, so `keel.models` covers every tier): a change of one is
 * pushed to the running server with `workspace/didChangeConfiguration` (see `middleware.ts`,
 * which hands these to vscode-languageclient's configuration sync). The other `keel.*` settings
 * restart the server ({@link RESTART_KEYS}) or only concern the extension.
 */
export const PUSH_KEYS = [
  'keel.models',
  'keel.mode',
  'keel.complexityK',
  'keel.energyWeights',
  'keel.stabilityThreshold',
  'keel.maxCost',
  'keel.maxSteps',
  'keel.maxAttempts',
] as const;
