// The Go package's C helpers (shim.c): each calls one library function and, when
// it fails, copies the error out of the library's per-thread slot in the same C call.
// A goroutine may move to another OS thread between two cgo calls, so reading the
// error in a second call could read another goroutine's.
#ifndef GO_INGEST_SHIM_H
#define GO_INGEST_SHIM_H
#include <stdlib.h>
#include "ingest.h"

// A failing call's error, copied out of the library's per-thread slot (malloc'd
// strings, freed by the Go side).
typedef struct {
	char *message;
	int rejected;
	size_t index;
	uint16_t code;
	char *code_name;
	char *field;
	char *rejection_message;
} go_ingest_error;

ingest_status go_ingest_capture(ingest_status status, go_ingest_error *e);
ingest_status go_ingest_client_new(const char *config, size_t len, uint32_t format,
		ingest_client **out, go_ingest_error *e);
ingest_status go_ingest_submit(const ingest_client *client, uint32_t kind, const uint8_t *bytes,
		size_t len, ingest_event_id *id, ingest_receipt **receipt, go_ingest_error *e);
ingest_status go_ingest_submit_batch(const ingest_client *client, const uint8_t *bytes, size_t len,
		ingest_batch **batch, go_ingest_error *e);
ingest_status go_ingest_close(const ingest_client *client, uint64_t timeout_ms,
		ingest_shutdown_report *report, go_ingest_error *e);
ingest_status go_ingest_receipt_try(const ingest_receipt *receipt, uint32_t ack, go_ingest_error *e);
ingest_status go_ingest_watch(const ingest_completions *queue, const ingest_receipt *receipt,
		uint32_t ack, uint64_t timeout_ms, uint64_t tag, go_ingest_error *e);
ingest_status go_ingest_watch_flush(const ingest_completions *queue, const ingest_client *client,
		uint64_t timeout_ms, uint64_t tag, go_ingest_error *e);
ingest_status go_ingest_health(const ingest_client *client, ingest_health *out, go_ingest_error *e);
ingest_status go_ingest_stats(const ingest_client *client, ingest_stats *out, go_ingest_error *e);
void go_ingest_rejection_copy(const ingest_batch *batch, size_t i, go_ingest_error *e);
ingest_status go_ingest_set_log(uint32_t max_level, go_ingest_error *e);
ingest_status go_ingest_flags_new(const char *text, size_t len, uint32_t format, ingest_flags **out,
		go_ingest_error *e);
ingest_status go_ingest_flags_assign(const ingest_flags *flags, const char *user, size_t len,
		char **json, go_ingest_error *e);
ingest_status go_ingest_flags_variant(const ingest_flags *flags, const char *flag, size_t flag_len,
		const char *user, size_t user_len, char **variant, go_ingest_error *e);

#endif
