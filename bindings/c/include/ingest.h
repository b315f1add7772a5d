/*
 * ingest.h: the C ABI of ingest-core. Validate e-commerce events, buffer them on disk
 * and deliver them to Apache Kafka from C and the languages that call C.
 * See bindings/c/README.md for the conventions (status codes, ownership, threads).
 */

#ifndef INGEST_H
#define INGEST_H

/* Generated from bindings/c/src by cbindgen (build.rs); do not edit. tests/header.rs checks it. */

#include <stddef.h>
#include <stdint.h>

// How long `ingest_client_free` lets a client that was never closed deliver what it
// holds.
#define INGEST_FREE_CLOSE_TIMEOUT_MS 30000

// The ABI's version: raised whenever a function, struct or constant changes in a way
// that breaks programs built against an older header.
#define INGEST_ABI_VERSION 1

// A timeout that never expires.
#define INGEST_NO_TIMEOUT UINT64_MAX

// What a call achieved. The values are fixed: new codes may be added, existing ones
// never change. 1–9 are the library's error kinds (`ingest_core::ErrorKind` numbers).
typedef enum {
  // Success.
  INGEST_OK = 0,
  // The event (or batch body) failed validation; see `ingest_last_rejection`.
  INGEST_ERR_INVALID_EVENT = 1,
  // Back-pressure: the in-memory queue is at its bound. Retry later.
  INGEST_ERR_QUEUE_FULL = 2,
  // The client is closed or closing; it takes no more events.
  INGEST_ERR_SHUTTING_DOWN = 3,
  // The configuration is invalid (the message names the key).
  INGEST_ERR_CONFIG = 4,
  // The Kafka client could not be created or an administrative request failed.
  INGEST_ERR_KAFKA = 5,
  // Some events did not reach the acknowledgement level asked for.
  INGEST_ERR_DELIVERY = 6,
  // A thread or file could not be set up or used.
  INGEST_ERR_IO = 7,
  // The disk buffer could not be opened or used.
  INGEST_ERR_BUFFER = 8,
  // The wait ended at its timeout; what it waited for may still happen.
  INGEST_ERR_TIMEOUT = 9,
  // Not an error: a non-blocking check found the events still on their way.
  INGEST_PENDING = 64,
  // A NULL pointer, an impossible length, text that is not UTF-8 or an unknown
  // enumeration value was passed.
  INGEST_ERR_INVALID_ARGUMENT = 100,
  // A bug inside the library was caught at the boundary; the message says where.
  INGEST_ERR_PANIC = 101,
  // An error of a kind this version of the ABI has no code for yet.
  INGEST_ERR_UNKNOWN = 199,
} ingest_status;

// The event types, passed as `uint32_t kind`.
typedef enum {
  // `product_view`.
  INGEST_PRODUCT_VIEW = 0,
  // `cart`.
  INGEST_CART = 1,
  // `purchase`.
  INGEST_PURCHASE = 2,
  // `search`.
  INGEST_SEARCH = 3,
} ingest_event_kind;

// The acknowledgement levels, passed as `uint32_t ack`.
typedef enum {
  // Validated and queued in memory (resolves at once).
  INGEST_ACK_ACCEPTED = 0,
  // Written to the disk buffer (without one: delivered to Kafka).
  INGEST_ACK_PERSISTED = 1,
  // Acknowledged by Kafka with `acks=all`.
  INGEST_ACK_DELIVERED = 2,
} ingest_ack;

// The format of a configuration's or a flags file's text, passed as `uint32_t format`
// (`ingest_client_new`, `ingest_flags_new`).
typedef enum {
  // TOML, as the edge agent's `[ingest]` section or flags file.
  INGEST_CONFIG_TOML = 0,
  // JSON: an object with the same keys.
  INGEST_CONFIG_JSON = 1,
} ingest_config_format;

// The log levels of `ingest_set_log_callback`.
typedef enum {
  // Logging off (as a maximum level).
  INGEST_LOG_OFF = 0,
  // Errors.
  INGEST_LOG_ERROR = 1,
  // Warnings.
  INGEST_LOG_WARN = 2,
  // Information.
  INGEST_LOG_INFO = 3,
  // Debugging detail.
  INGEST_LOG_DEBUG = 4,
  // Tracing detail.
  INGEST_LOG_TRACE = 5,
} ingest_log_level;

// What a batch submission did: the accepted events' ids and receipt, and the rejected
// events. Opaque; free with `ingest_batch_free`.
typedef struct ingest_batch ingest_batch;

// A client: one ingestor (validation, queue, optional disk buffer, Kafka producer).
// Opaque and thread-safe; create with `ingest_client_new`, close with `ingest_close`,
// release with `ingest_client_free`.
typedef struct ingest_client ingest_client;

// A completion queue: register waits under `uint64_t` tags, take the finished ones
// off without blocking (`ingest_completions_poll`) or with a bounded wait
// (`ingest_completions_wait`). The library never calls into the host to report them.
// Opaque and thread-safe; one queue may serve several clients. Free with
// `ingest_completions_free`.
typedef struct ingest_completions ingest_completions;

// A checked set of feature flags. Opaque, immutable and thread-safe; create with
// `ingest_flags_new`, release with `ingest_flags_free`.
typedef struct ingest_flags ingest_flags;

// What became of a submission's events. Opaque and thread-safe; free with
// `ingest_receipt_free`. Freeing it does not affect delivery.
typedef struct ingest_receipt ingest_receipt;

// An event id: a UUID's 16 bytes (RFC 9562 order). `ingest_event_id_format` writes
// its text form.
typedef struct {
  // The UUID's bytes.
  uint8_t bytes[16];
} ingest_event_id;

// One rejected event: its fixed validation code (see the table in the README), the
// code's name, the field at fault (NULL for whole-document problems) and a message.
// The strings are borrowed from the object that filled the struct.
typedef struct {
  // The event's position in its batch (0 for a single submission).
  size_t index;
  // The validation code's number (`ingest_core::ErrorCode::number`).
  uint16_t code;
  // The code's name (`missing_field`).
  const char *code_name;
  // The field's path (`items[0].price`), or NULL.
  const char *field;
  // A human-readable explanation.
  const char *message;
} ingest_rejection;

// What closing achieved.
typedef struct {
  // Records Kafka had not acknowledged by the deadline.
  uint64_t undelivered;
  // Of those, the records kept in the disk buffer for the next start.
  uint64_t kept_in_buffer;
  // Records neither delivered nor kept: lost.
  uint64_t lost;
  // How long closing took, in milliseconds.
  uint64_t elapsed_ms;
} ingest_shutdown_report;

// A readiness snapshot.
typedef struct {
  // 1 when new events can be taken now (not closing, threads alive, Kafka
  // reachable or the disk buffer has room).
  uint8_t ready;
  // 1 unless the circuit breaker is open.
  uint8_t kafka_reachable;
  // 1 once closing began.
  uint8_t shutting_down;
  // 1 when a disk buffer is configured (the `buffer_*` fields are then set).
  uint8_t has_buffer;
  // The circuit breaker: 0 closed, 1 half-open, 2 open.
  uint32_t breaker;
  // Background threads that died (a restart is needed).
  uint32_t dead_threads;
  // Events waiting in the in-memory queue.
  uint64_t queue_events;
  // Bytes waiting in the in-memory queue.
  uint64_t queue_bytes;
  // Unacknowledged events in the disk buffer.
  uint64_t buffer_entries;
  // Bytes the disk buffer holds.
  uint64_t buffer_bytes;
  // The disk buffer's bound.
  uint64_t buffer_max_bytes;
} ingest_health;

// Running totals since the client was created.
typedef struct {
  // Events validated and queued.
  uint64_t accepted;
  // Events that failed validation.
  uint64_t rejected;
  // Records acknowledged by Kafka (dead letters included).
  uint64_t delivered;
  // Records Kafka did not take.
  uint64_t failed;
  // Dead-letter records not queued.
  uint64_t dead_letters_dropped;
  // Events waiting in the in-memory queue.
  uint64_t queue_events;
  // Bytes waiting in the in-memory queue.
  uint64_t queue_bytes;
} ingest_stats;

// One finished registration of a completion queue.
typedef struct {
  // The tag given when it was registered.
  uint64_t tag;
  // `INGEST_OK`, or why not (`INGEST_ERR_DELIVERY`, `INGEST_ERR_TIMEOUT`, ...).
  ingest_status status;
} ingest_completion;

// The host's log function: `user_data` as registered, the level
// (`INGEST_LOG_ERROR` .. `INGEST_LOG_TRACE`), the target (the emitting module, e.g.
// `ingest_core::delivery`) and the message, both NUL-terminated and valid only during
// the call.
//
// It is called on whichever thread logs (the library's background threads, the
// Kafka client's threads, or a thread inside an `ingest_*` call), possibly on several
// at once: it must be thread-safe, return promptly, and not call `ingest_*` functions.
typedef void (*ingest_log_fn)(void *user_data,
                              uint32_t level,
                              const char *target,
                              const char *message);

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// Submits a batch body, `bytes[0..len]` (copied): NDJSON or a JSON array of events,
// each naming its `type`. Valid events are queued even when others are rejected; on
// success `*batch_out` lists both (`ingest_batch_*`).
//
// Errors: `INGEST_ERR_INVALID_EVENT` when the body as a whole is unusable (empty, too
// large, broken array; details from `ingest_last_rejection`), `INGEST_ERR_QUEUE_FULL`
// or `INGEST_ERR_SHUTTING_DOWN` (nothing of the batch was queued).
//
// # Safety
//
// `client` must be NULL or live; `bytes` must point to `len` readable bytes;
// `batch_out` must be writable.
ingest_status ingest_submit_batch(const ingest_client *client,
                                  const uint8_t *bytes,
                                  size_t len,
                                  ingest_batch **batch_out);

// How many events of the batch were accepted (0 for NULL).
//
// # Safety
//
// `batch` must be NULL or live.
size_t ingest_batch_accepted(const ingest_batch *batch);

// The accepted events' ids, in batch order: an array of `ingest_batch_accepted`
// entries, borrowed from the batch (NULL for NULL).
//
// # Safety
//
// `batch` must be NULL or live.
const ingest_event_id *ingest_batch_event_ids(const ingest_batch *batch);

// How many events of the batch were rejected (0 for NULL).
//
// # Safety
//
// `batch` must be NULL or live.
size_t ingest_batch_rejected(const ingest_batch *batch);

// Writes the `i`-th rejection (batch order) to `*out`; its strings are borrowed from
// the batch. `INGEST_ERR_INVALID_ARGUMENT` when `i` is out of range.
//
// # Safety
//
// `batch` must be NULL or live; `out` must be writable.
ingest_status ingest_batch_rejection(const ingest_batch *batch, size_t i, ingest_rejection *out);

// A receipt for the batch's accepted events (a new handle: free it with
// `ingest_receipt_free`); NULL for NULL.
//
// # Safety
//
// `batch` must be NULL or live.
ingest_receipt *ingest_batch_receipt(const ingest_batch *batch);

// Releases a batch; NULL is ignored. Receipts taken from it stay valid.
//
// # Safety
//
// `batch` must be NULL or a batch the library returned, not yet freed.
void ingest_batch_free(ingest_batch *batch);

// The library's version (`"0.1.0"`), a static string.
const char *ingest_version(void);

// The ABI version this library implements ([`INGEST_ABI_VERSION`] of its header); a
// program may compare it with the header it was built against.
uint32_t ingest_abi_version(void);

// A status's snake_case name (`"queue_full"`), a static string; `"unknown"` for a
// value that is no status.
const char *ingest_status_name(uint32_t status);

// The message of the last call on this thread that failed, NUL-terminated; an empty
// string when none has. Borrowed: valid until the next call on this thread that
// fails. Never NULL.
const char *ingest_last_error_message(void);

// Copies the last error's message (as [`ingest_last_error_message`]) into `buffer`
// of `capacity` bytes, cut to fit and always NUL-terminated when `capacity > 0`.
// Returns the message's full length in bytes, without the NUL: a result of
// `capacity` or more means it was cut. `buffer` may be NULL when `capacity` is 0, to
// ask for the length.
//
// # Safety
//
// `buffer` must be NULL or point to `capacity` writable bytes.
size_t ingest_last_error_copy(char *buffer, size_t capacity);

// When the last call on this thread that failed rejected an event
// (`INGEST_ERR_INVALID_EVENT`), fills `out` with its code, field and message and
// returns 1; otherwise returns 0 and leaves `out` alone. The strings are borrowed:
// valid until the next call on this thread that fails.
//
// # Safety
//
// `out` must be NULL or point to a writable `ingest_rejection`.
int32_t ingest_last_rejection(ingest_rejection *out);

// Releases a string the library handed over to the caller (`ingest_flags_assign`,
// `ingest_flags_variant`); NULL is ignored. Strings the library only lends (error
// messages, names) are never passed here.
//
// # Safety
//
// `string` must be NULL or a string such a function wrote, not yet freed.
void ingest_string_free(char *string);

// Creates a client from configuration text: `format` is `INGEST_CONFIG_TOML` or
// `INGEST_CONFIG_JSON`, the keys those of the `[ingest]` configuration (`kafka.brokers`,
// `buffer.type`, `buffer.dir`, ...; see docs/configuration.md). Starts the delivery
// threads; does not contact Kafka (an unreachable cluster shows in delivery and
// health, not here). On success `*out` holds the client.
//
// Errors: `INGEST_ERR_CONFIG` (the message names the key), `INGEST_ERR_BUFFER` (the disk
// buffer cannot be opened, e.g. another process holds it), `INGEST_ERR_KAFKA`.
//
// # Safety
//
// `config` must point to `config_len` readable bytes; `out` must be writable.
ingest_status ingest_client_new(const char *config,
                                size_t config_len,
                                uint32_t format,
                                ingest_client **out);

// Releases a client. One never closed is closed first, with a deadline of
// [`INGEST_FREE_CLOSE_TIMEOUT_MS`]. NULL is ignored. No other thread may use the
// client during or after this call.
//
// # Safety
//
// `client` must be NULL or a pointer from `ingest_client_new` not yet freed.
void ingest_client_free(ingest_client *client);

// Submits one event of type `kind` (`INGEST_PRODUCT_VIEW`, ...): `bytes[0..len]` is its
// JSON, copied, and sent to Kafka byte for byte. On success writes the event's id to
// `*id_out` and a receipt to `*receipt_out` (to wait for an acknowledgement level;
// free it with `ingest_receipt_free`); either may be NULL when not wanted.
//
// Errors: `INGEST_ERR_INVALID_EVENT` (details from `ingest_last_rejection`; the event
// also goes to the dead-letter topic), `INGEST_ERR_QUEUE_FULL` (retry later),
// `INGEST_ERR_SHUTTING_DOWN` (closed).
//
// # Safety
//
// `client` as for `ingest_client_free`; `bytes` must point to `len` readable bytes;
// `id_out` and `receipt_out` must be NULL or writable.
ingest_status ingest_submit(const ingest_client *client,
                            uint32_t kind,
                            const uint8_t *bytes,
                            size_t len,
                            ingest_event_id *id_out,
                            ingest_receipt **receipt_out);

// Waits until every event submitted before this call has been delivered to Kafka or
// has failed, up to `timeout_ms`. Errors: `INGEST_ERR_TIMEOUT`,
// `INGEST_ERR_SHUTTING_DOWN`.
//
// # Safety
//
// `client` as for `ingest_client_free`.
ingest_status ingest_flush(const ingest_client *client, uint64_t timeout_ms);

// Closes the client: stops taking events, delivers what it holds within `timeout_ms`,
// stops its threads and releases the disk buffer, and writes what it achieved to
// `*report_out` (may be NULL). With a disk buffer, what Kafka has not acknowledged by
// then stays in the buffer for the next start (`kept_in_buffer`). The client still
// needs `ingest_client_free`; meanwhile other calls on it fail with
// `INGEST_ERR_SHUTTING_DOWN`, as does a second close.
//
// # Safety
//
// `client` as for `ingest_client_free`; `report_out` must be NULL or writable.
ingest_status ingest_close(const ingest_client *client,
                           uint64_t timeout_ms,
                           ingest_shutdown_report *report_out);

// Writes a readiness snapshot to `*out`.
//
// # Safety
//
// `client` as for `ingest_client_free`; `out` must be writable.
ingest_status ingest_client_health(const ingest_client *client, ingest_health *out);

// Writes the running totals to `*out` (for hosts that export their own metrics).
//
// # Safety
//
// `client` as for `ingest_client_free`; `out` must be writable.
ingest_status ingest_client_stats(const ingest_client *client, ingest_stats *out);

// Writes the text form of `id` (36 characters and a NUL) to `buffer` of `capacity`
// bytes (at least 37).
//
// # Safety
//
// `id` must be readable; `buffer` must point to `capacity` writable bytes.
ingest_status ingest_event_id_format(const ingest_event_id *id, char *buffer, size_t capacity);

// Creates a completion queue holding at most `capacity` registrations (0: the default,
// 65,536). Never NULL.
ingest_completions *ingest_completions_new(size_t capacity);

// Registers `tag` to complete when the receipt's events reach `ack`, fail to, or
// `timeout_ms` passes first (`INGEST_NO_TIMEOUT`: no limit). The receipt may be freed
// right after. Errors: `INGEST_ERR_QUEUE_FULL` when the queue holds its capacity
// (take completions off first).
//
// # Safety
//
// `queue` and `receipt` must be NULL or live.
ingest_status ingest_completions_watch(const ingest_completions *queue,
                                       const ingest_receipt *receipt,
                                       uint32_t ack,
                                       uint64_t timeout_ms,
                                       uint64_t tag);

// Registers `tag` to complete when a flush of `client` (as `ingest_flush` with
// `timeout_ms`) finishes.
//
// # Safety
//
// `queue` and `client` must be NULL or live.
ingest_status ingest_completions_watch_flush(const ingest_completions *queue,
                                             const ingest_client *client,
                                             uint64_t timeout_ms,
                                             uint64_t tag);

// Moves up to `max` finished registrations into `out[0..max]` without blocking;
// returns how many (0 when none, or for a NULL argument).
//
// # Safety
//
// `queue` must be NULL or live; `out` must point to `max` writable entries.
size_t ingest_completions_poll(const ingest_completions *queue, ingest_completion *out, size_t max);

// As [`ingest_completions_poll`], but first waits up to `timeout_ms` for at least one.
//
// # Safety
//
// As [`ingest_completions_poll`].
size_t ingest_completions_wait(const ingest_completions *queue,
                               ingest_completion *out,
                               size_t max,
                               uint64_t timeout_ms);

// Registrations still waiting (0 for NULL).
//
// # Safety
//
// `queue` must be NULL or live.
size_t ingest_completions_waiting(const ingest_completions *queue);

// Releases a queue; NULL is ignored. Registrations still waiting finish unobserved.
//
// # Safety
//
// `queue` must be NULL or a queue from `ingest_completions_new`, not yet freed.
void ingest_completions_free(ingest_completions *queue);

// Reads a flags file's text, `text[0..len]`: `format` is `INGEST_CONFIG_TOML`
// (`[[flags]]` tables) or `INGEST_CONFIG_JSON` (`{"flags": [...]}`), as the edge
// agent's `flags.file` (docs/edge-agent.md, "Feature flags"). On success `*out` holds
// the flags.
//
// Errors: `INGEST_ERR_CONFIG` when the text does not parse or a flag breaks a rule; the
// message names where (`flags[0].variants: the percentages add up to 90, not 100`, or
// `flags file: ... at line 2 column 1`).
//
// # Safety
//
// `text` must point to `len` readable bytes; `out` must be writable.
ingest_status ingest_flags_new(const char *text, size_t len, uint32_t format, ingest_flags **out);

// How many flags the set holds (0 for NULL).
//
// # Safety
//
// `flags` must be NULL or live.
size_t ingest_flags_len(const ingest_flags *flags);

// The variant of every flag for the user `user[0..len]` (UTF-8; a user id, or an
// anonymous id for a visitor), as a JSON object from flag name to variant name, in
// flag name order: `{"checkout_v2":"control","search_ranking":"learned"}`. On success
// `*json_out` holds the NUL-terminated text, which the caller owns and frees with
// `ingest_string_free`.
//
// # Safety
//
// `flags` must be NULL or live; `user` must point to `len` readable bytes; `json_out`
// must be writable.
ingest_status ingest_flags_assign(const ingest_flags *flags,
                                  const char *user,
                                  size_t len,
                                  char **json_out);

// The user's variant of one flag: `flag[0..flag_len]` and `user[0..user_len]` are
// UTF-8. On success `*variant_out` holds the variant's NUL-terminated name, which the
// caller owns and frees with `ingest_string_free`, or NULL when the set has no such
// flag (still `INGEST_OK`).
//
// # Safety
//
// `flags` must be NULL or live; `flag` and `user` must point to `flag_len` and
// `user_len` readable bytes; `variant_out` must be writable.
ingest_status ingest_flags_variant(const ingest_flags *flags,
                                   const char *flag,
                                   size_t flag_len,
                                   const char *user,
                                   size_t user_len,
                                   char **variant_out);

// Releases a flag set; NULL is ignored. No other thread may use it during or after
// this call.
//
// # Safety
//
// `flags` must be NULL or a pointer from `ingest_flags_new` not yet freed.
void ingest_flags_free(ingest_flags *flags);

// Registers `log` to receive the library's log records up to `max_level`
// (`INGEST_LOG_ERROR` .. `INGEST_LOG_TRACE`; `INGEST_LOG_OFF` or a NULL `log` turns
// logging off). Replaces an earlier registration. Call it before creating clients to
// see their start-up.
//
// The first registration installs the process's global `tracing` subscriber (and the
// bridge from the `log` crate); when the process already has one (another Rust library
// installed it) this fails with `INGEST_ERR_IO` and logs go there instead.
//
// # Safety
//
// `log` must stay callable, and `user_data` valid for it, until logging is turned off
// or the process ends; see [`ingest_log_fn`] for what `log` may do.
ingest_status ingest_set_log_callback(ingest_log_fn log, void *user_data, uint32_t max_level);

// Blocks until the receipt's events reach `ack` (`INGEST_ACK_PERSISTED`,
// `INGEST_ACK_DELIVERED`; `INGEST_ACK_ACCEPTED` returns at once) or `timeout_ms`
// passes (`INGEST_NO_TIMEOUT`: no limit).
//
// Errors: `INGEST_ERR_DELIVERY` (some events did not get there; the message says how
// many and why), `INGEST_ERR_TIMEOUT` (still on their way: wait again).
//
// # Safety
//
// `receipt` must be NULL or live.
ingest_status ingest_receipt_wait(const ingest_receipt *receipt, uint32_t ack, uint64_t timeout_ms);

// [`ingest_receipt_wait`] without waiting: `INGEST_PENDING` while the events are on
// their way, else the outcome.
//
// # Safety
//
// `receipt` must be NULL or live.
ingest_status ingest_receipt_try(const ingest_receipt *receipt, uint32_t ack);

// How many events the receipt covers (0 for NULL).
//
// # Safety
//
// `receipt` must be NULL or live.
size_t ingest_receipt_event_count(const ingest_receipt *receipt);

// Releases a receipt; NULL is ignored.
//
// # Safety
//
// `receipt` must be NULL or a receipt the library returned, not yet freed.
void ingest_receipt_free(ingest_receipt *receipt);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* INGEST_H */
