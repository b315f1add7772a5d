// The public API's types. The shapes of the plain objects (HealthSnapshot,
// StatsSnapshot, ShutdownReport, BatchOutcome, RejectionInfo, LogRecord) are
// generated from the Rust source into binding.d.ts (node scripts/build.mjs), whose
// drift scripts/test-bindings checks; this file types the JavaScript layer around
// them (index.js).
import type { EventEmitter } from 'node:events';
import type {
  BatchOutcome,
  BufferLevel,
  HealthSnapshot,
  LogRecord,
  RejectionInfo,
  ShutdownReport,
  StatsSnapshot,
} from './binding';

export type { BatchOutcome, BufferLevel, HealthSnapshot, LogRecord, RejectionInfo, ShutdownReport, StatsSnapshot };

/** The event types of docs/events.md. */
export type EventKind = 'product_view' | 'cart' | 'purchase' | 'search';
/** How far an event must get before `submit` resolves. */
export type AckLevel = 'accepted' | 'persisted' | 'delivered';
/** A payload: the event's JSON bytes (a string is encoded as UTF-8). */
export type Payload = Buffer | Uint8Array | string;
export type LogLevel = 'off' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface SubmitOptions {
  /** Default `accepted`. */
  ack?: AckLevel;
}

/**
 * Client options: `brokers` and `bufferDir` (a disk buffer of type `log` there), and
 * any section of ingest-core's configuration (docs/configuration.md) with its keys in
 * camelCase or snake_case; `kafka.properties` keys are librdkafka's, as written.
 * Unknown keys are a ConfigError naming the key.
 */
export interface ClientOptions {
  brokers?: string | string[];
  bufferDir?: string;
  source?: string;
  kafka?: Record<string, unknown>;
  topics?: Record<string, { name: string; partitions?: number; replicationFactor?: number }>;
  limits?: Record<string, number>;
  queue?: Record<string, number>;
  deadLetter?: Record<string, unknown>;
  buffer?: Record<string, unknown>;
  breaker?: Record<string, unknown>;
  telemetry?: Record<string, unknown>;
}

export declare class Client {
  constructor(options: ClientOptions);
  /** A client from a whole configuration text (the keys of docs/configuration.md). */
  static fromConfig(text: string, format?: 'toml' | 'json'): Client;
  /** Resolves with the event id once the event reaches `ack`; rejects with an IngestError. */
  submit(kind: EventKind, payload: Payload, options?: SubmitOptions): Promise<string>;
  /** An NDJSON or JSON-array batch body, each event naming its `type`. */
  submitBatch(payload: Payload, options?: SubmitOptions): Promise<BatchOutcome>;
  /** Default timeout 30,000 ms; rejects with TimeoutError. */
  flush(timeoutMs?: number): Promise<void>;
  /** Default timeout 30,000 ms; a second close rejects with ClosedError. */
  close(timeoutMs?: number): Promise<ShutdownReport>;
  health(): HealthSnapshot;
  stats(): StatsSnapshot;
}

/**
 * A checked set of feature flags, assigning users to variants as the edge agent does
 * (docs/edge-agent.md, "Feature flags"). Bad flags throw a ConfigError whose `field`
 * is where the fault is (`flags[0].variants`; `flags file` when the text does not parse).
 */
export declare class Flags {
  private constructor();
  /** Flags from a TOML flags file's text (`[[flags]]` tables). */
  static fromToml(text: string): Flags;
  /** Flags from a JSON flags file's text (`{"flags": [...]}`). */
  static fromJson(text: string): Flags;
  /** Flags from the file at `file`: JSON when its name ends in `.json`, else TOML. */
  static fromFile(file: string): Flags;
  /** The user's variant of every flag, by flag name. */
  assign(user: string): Record<string, string>;
  /** The user's variant of one flag; null when there is no such flag. */
  variant(flag: string, user: string): string | null;
  /** How many flags the set holds. */
  readonly size: number;
}

export declare class IngestError extends Error {
  /** `invalid`, `queue_full`, `shutting_down`, `config`, `kafka`, `delivery`, `io`, `buffer`, `timeout`, `invalid_argument`. */
  readonly kind: string;
  /** The validation code (`missing_field`, ...) for a ValidationError, else `kind`. */
  readonly code: string;
  readonly codeNumber: number;
  /** The field path of a validation error (`items[2].price`), where in a flags file a ConfigError of Flags is (`flags[0].variants`), else null. */
  readonly field: string | null;
  readonly retryable: boolean;
}
export declare class ValidationError extends IngestError {}
export declare class QueueFullError extends IngestError {}
export declare class TimeoutError extends IngestError {}
export declare class ClosedError extends IngestError {}
export declare class ConfigError extends IngestError {}
export declare class DeliveryError extends IngestError {}
export declare class InvalidArgumentError extends IngestError {}

export interface LogEmitter extends EventEmitter {
  /** The most detailed level forwarded (default `info`). */
  level: LogLevel;
  on(event: 'log', listener: (record: LogRecord) => void): this;
  off(event: 'log', listener: (record: LogRecord) => void): this;
}
/** The library's and its Kafka client's log records, while a 'log' listener exists. */
export declare const logs: LogEmitter;

export declare const EVENT_KINDS: readonly EventKind[];
export declare const ACK_LEVELS: readonly AckLevel[];
