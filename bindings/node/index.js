'use strict';
// The public API of the `ingest-core` package: a thin layer over the native addon
// (src/*.rs, built by `napi build`) that maps option names onto ingest-core's
// configuration keys, checks arguments before they cross into Rust, turns native
// errors into `IngestError` subclasses and forwards logs to an EventEmitter; and the
// feature flags (`Flags`), assigned as the edge agent assigns them.

const { EventEmitter } = require('node:events');
const fs = require('node:fs');
const path = require('node:path');

const native = loadNative();

function loadNative() {
  const file = path.join(__dirname, 'ingest-core.node');
  try {
    return require(file);
  } catch (error) {
    const hint = new Error(
      `ingest-core: cannot load the native addon ${file} (${error.message}); ` +
        'build it with `npm run build` in bindings/node (needs Rust and cargo)',
    );
    hint.cause = error;
    throw hint;
  }
}

const KINDS = ['product_view', 'cart', 'purchase', 'search'];
const ACKS = ['accepted', 'persisted', 'delivered'];
const DEFAULT_TIMEOUT_MS = 30_000;
// Must agree with src/error.rs.
const MARKER = 'ingest-core:';

class IngestError extends Error {
  constructor(message, details = {}) {
    super(message);
    this.name = this.constructor.name;
    /** The error's class: `invalid`, `queue_full`, `shutting_down`, `config`, ... */
    this.kind = details.kind ?? 'invalid_argument';
    /** For validation errors the code (`missing_field`, ...), else the kind. */
    this.code = details.code ?? this.kind;
    /** The fixed number of `code` (validation code or error kind). */
    this.codeNumber = details.codeNumber ?? details.kindNumber ?? 0;
    /** The field path a validation error concerns (`items[2].price`), else null. */
    this.field = details.field ?? null;
    /** Whether the same call may succeed later. */
    this.retryable = details.retryable ?? false;
  }
}
class ValidationError extends IngestError {}
class QueueFullError extends IngestError {}
class TimeoutError extends IngestError {}
class ClosedError extends IngestError {}
class ConfigError extends IngestError {}
class DeliveryError extends IngestError {}
class InvalidArgumentError extends IngestError {}

const CLASSES = {
  invalid: ValidationError,
  queue_full: QueueFullError,
  timeout: TimeoutError,
  shutting_down: ClosedError,
  config: ConfigError,
  delivery: DeliveryError,
  invalid_argument: InvalidArgumentError,
};

/** Turns an error thrown by the native layer into an IngestError subclass. */
function translate(error) {
  if (error instanceof IngestError) return error;
  const message = error && typeof error.message === 'string' ? error.message : String(error);
  if (message.startsWith(MARKER)) {
    let details;
    try {
      details = JSON.parse(message.slice(MARKER.length));
    } catch {
      return new IngestError(message);
    }
    const Class = CLASSES[details.kind] ?? IngestError;
    return new Class(details.message, details);
  }
  // napi-rs's own argument conversion errors.
  return new InvalidArgumentError(message);
}

function invalidArgument(message) {
  return new InvalidArgumentError(message);
}

function snakeCase(key) {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Option objects with camelCase (or snake_case) keys, as ingest-core's keys. */
function configKeys(value, pathSoFar) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out = {};
  for (const [key, inner] of Object.entries(value)) {
    if (inner === undefined) continue;
    // librdkafka property names are passed as written.
    const name = pathSoFar === 'kafka.properties' ? key : snakeCase(key);
    out[name] = configKeys(inner, pathSoFar ? `${pathSoFar}.${name}` : name);
  }
  return out;
}

function payloadBytes(payload, what) {
  if (payload instanceof Uint8Array) return payload;
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  throw invalidArgument(
    `${what} must be a Buffer, a Uint8Array or a string, got ${describe(payload)}`,
  );
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  return typeof value;
}

function ackOf(options) {
  if (options === undefined || options === null) return 'accepted';
  if (typeof options !== 'object') {
    throw invalidArgument(`options must be an object like { ack: 'delivered' }, got ${describe(options)}`);
  }
  const ack = options.ack ?? 'accepted';
  if (!ACKS.includes(ack)) {
    throw invalidArgument(`ack must be one of ${ACKS.join(', ')}, got ${JSON.stringify(ack)}`);
  }
  return ack;
}

function timeoutOf(timeoutMs) {
  if (timeoutMs === undefined) return DEFAULT_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw invalidArgument(`timeoutMs must be a finite number >= 0, got ${describe(timeoutMs)} ${timeoutMs}`);
  }
  return timeoutMs;
}

function closedError() {
  return new ClosedError('the client is closed', { kind: 'shutting_down', kindNumber: 3, retryable: false });
}

/** A rejected promise for a misuse or a native error, so async callers see one path. */
function rejected(error) {
  return Promise.reject(translate(error));
}

class Client {
  #native;
  #closed = false;

  /**
   * @param {object} options `brokers`, `bufferDir` and any ingest-core configuration
   *   section (`kafka`, `topics`, `limits`, `queue`, `deadLetter`, `buffer`, `breaker`,
   *   `telemetry`, `source`), keys in camelCase or snake_case.
   */
  constructor(options) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw invalidArgument(`options must be an object like { brokers: '127.0.0.1:9092' }, got ${describe(options)}`);
    }
    if (options[Client.#fromText]) {
      this.#native = Client.#create(options.text, options.format);
      return;
    }
    const { brokers, bufferDir, ...rest } = options;
    const config = configKeys(rest, '');
    if (brokers !== undefined) {
      if (typeof brokers !== 'string' && !Array.isArray(brokers)) {
        throw invalidArgument(`brokers must be a string or an array of strings, got ${describe(brokers)}`);
      }
      config.kafka = { ...(config.kafka ?? {}), brokers: Array.isArray(brokers) ? brokers.join(',') : brokers };
    }
    if (bufferDir !== undefined) {
      if (typeof bufferDir !== 'string') {
        throw invalidArgument(`bufferDir must be a string, got ${describe(bufferDir)}`);
      }
      config.buffer = { type: 'log', ...(config.buffer ?? {}), dir: bufferDir };
    }
    this.#native = Client.#create(JSON.stringify(config), 'json');
  }

  static #fromText = Symbol('fromText');

  static #create(text, format) {
    try {
      return new native.Client(text, format);
    } catch (error) {
      throw translate(error);
    }
  }

  /**
   * A client from a whole configuration file's text (`[ingest]`-less keys as in
   * docs/configuration.md), TOML or JSON.
   */
  static fromConfig(text, format = 'toml') {
    if (typeof text !== 'string') throw invalidArgument(`config text must be a string, got ${describe(text)}`);
    if (format !== 'toml' && format !== 'json') {
      throw invalidArgument(`format must be 'toml' or 'json', got ${JSON.stringify(format)}`);
    }
    return new Client({ [Client.#fromText]: true, text, format });
  }

  /**
   * Validates and queues one event; resolves with its id once it reaches `ack`
   * (`accepted`: at once; `persisted`; `delivered`). Throws nothing: every failure
   * rejects the promise with an IngestError.
   */
  submit(kind, payload, options) {
    try {
      if (this.#closed) throw closedError();
      if (!KINDS.includes(kind)) {
        throw invalidArgument(`kind must be one of ${KINDS.join(', ')}, got ${JSON.stringify(kind) ?? describe(kind)}`);
      }
      const bytes = payloadBytes(payload, 'payload');
      const ack = ackOf(options);
      if (ack === 'accepted') return Promise.resolve(this.#native.submit(kind, bytes));
      return this.#native.submitAndWait(kind, bytes, ack).catch(rejected);
    } catch (error) {
      return rejected(error);
    }
  }

  /**
   * Submits a batch body (NDJSON or a JSON array, each event naming its `type`);
   * resolves with `{ ids, rejections }` once the accepted events reach `ack`.
   */
  submitBatch(payload, options) {
    try {
      if (this.#closed) throw closedError();
      const bytes = payloadBytes(payload, 'batch payload');
      return this.#native.submitBatch(bytes, ackOf(options)).catch(rejected);
    } catch (error) {
      return rejected(error);
    }
  }

  /** Resolves when everything submitted so far is delivered (or failed). */
  flush(timeoutMs) {
    try {
      if (this.#closed) throw closedError();
      return this.#native.flush(timeoutOf(timeoutMs)).catch(rejected);
    } catch (error) {
      return rejected(error);
    }
  }

  /**
   * Stops taking events, delivers what it holds within `timeoutMs` and resolves with
   * `{ undelivered, keptInBuffer, lost, elapsedMs }`. A second close rejects with
   * ClosedError.
   */
  close(timeoutMs) {
    try {
      const limit = timeoutOf(timeoutMs);
      if (this.#closed) throw closedError();
      this.#closed = true;
      return this.#native.close(limit).catch(rejected);
    } catch (error) {
      return rejected(error);
    }
  }

  /** A readiness snapshot. */
  health() {
    return this.#native.health();
  }

  /** Running totals. */
  stats() {
    return this.#native.stats();
  }
}

/**
 * A checked set of feature flags, assigning users to variants as the edge agent does
 * (docs/edge-agent.md, "Feature flags"): the same flags file gives every user the same
 * variants here, on every agent and in every binding. Immutable.
 */
class Flags {
  #native;

  constructor(token, text, format) {
    if (token !== Flags.#token) {
      throw invalidArgument('create Flags with Flags.fromToml(text) or Flags.fromJson(text)');
    }
    try {
      this.#native = new native.Flags(text, format);
    } catch (error) {
      throw translate(error);
    }
  }

  static #token = Symbol('Flags');

  static #from(text, format) {
    if (typeof text !== 'string') throw invalidArgument(`flags text must be a string, got ${describe(text)}`);
    return new Flags(Flags.#token, text, format);
  }

  /** Flags from a TOML flags file's text (`[[flags]]` tables); bad flags throw ConfigError. */
  static fromToml(text) {
    return Flags.#from(text, 'toml');
  }

  /** Flags from a JSON flags file's text (`{"flags": [...]}`); bad flags throw ConfigError. */
  static fromJson(text) {
    return Flags.#from(text, 'json');
  }

  /**
   * Flags from the file at `file`: JSON when its name ends in `.json`, else TOML, as the
   * edge agent reads `flags.file`. A file that cannot be read, or bad flags, throw a
   * ConfigError whose message starts with the file's path.
   */
  static fromFile(file) {
    if (typeof file !== 'string') throw invalidArgument(`file must be a string, got ${describe(file)}`);
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(`${file}: flags file: cannot be read: ${error.message}`, {
        kind: 'config',
        kindNumber: 4,
        field: 'flags file',
      });
    }
    try {
      return Flags.#from(text, file.endsWith('.json') ? 'json' : 'toml');
    } catch (error) {
      if (error instanceof ConfigError) error.message = `${file}: ${error.message}`;
      throw error;
    }
  }

  /** The user's variant of every flag, by flag name: `{ checkout_v2: 'control' }`. */
  assign(user) {
    if (typeof user !== 'string') throw invalidArgument(`user must be a string, got ${describe(user)}`);
    return this.#native.assign(user);
  }

  /** The user's variant of one flag; null when there is no such flag. */
  variant(flag, user) {
    if (typeof flag !== 'string') throw invalidArgument(`flag must be a string, got ${describe(flag)}`);
    if (typeof user !== 'string') throw invalidArgument(`user must be a string, got ${describe(user)}`);
    return this.#native.variant(flag, user) ?? null;
  }

  /** How many flags the set holds. */
  get size() {
    return this.#native.size;
  }
}

const LEVELS = ['off', 'error', 'warn', 'info', 'debug', 'trace'];

/**
 * The library's log records: `logs.on('log', ({ level, target, message }) => ...)`.
 * Records up to `logs.level` (default `info`) are forwarded while a listener exists.
 */
class LogEmitter extends EventEmitter {
  #level = 'info';

  constructor() {
    super();
    this.on('newListener', (event) => {
      if (event === 'log' && this.listenerCount('log') === 0) this.#install(true);
    });
    this.on('removeListener', (event) => {
      if (event === 'log' && this.listenerCount('log') === 0) this.#install(false);
    });
  }

  get level() {
    return this.#level;
  }

  set level(level) {
    if (!LEVELS.includes(level)) {
      throw invalidArgument(`log level must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
    }
    this.#level = level;
    if (this.listenerCount('log') > 0) this.#install(true);
  }

  #install(on) {
    try {
      if (on) native.setLogHandler((record) => this.emit('log', record), this.#level);
      else native.setLogHandler(null, 'off');
    } catch (error) {
      throw translate(error);
    }
  }
}

const logs = new LogEmitter();

module.exports = {
  Client,
  Flags,
  logs,
  IngestError,
  ValidationError,
  QueueFullError,
  TimeoutError,
  ClosedError,
  ConfigError,
  DeliveryError,
  InvalidArgumentError,
  EVENT_KINDS: Object.freeze([...KINDS]),
  ACK_LEVELS: Object.freeze([...ACKS]),
};
