#include <string.h>
#include "shim.h"
static char *go_ingest_strdup(const char *s) { return s ? strdup(s) : NULL; }

ingest_status go_ingest_capture(ingest_status status, go_ingest_error *e) {
  if (status == INGEST_OK || status == INGEST_PENDING) return status;
  e->message = go_ingest_strdup(ingest_last_error_message());
  ingest_rejection r;
  if (ingest_last_rejection(&r)) {
    e->rejected = 1;
    e->index = r.index;
    e->code = r.code;
    e->code_name = go_ingest_strdup(r.code_name);
    e->field = go_ingest_strdup(r.field);
    e->rejection_message = go_ingest_strdup(r.message);
  }
  return status;
}

ingest_status go_ingest_client_new(const char *config, size_t len, uint32_t format,
    ingest_client **out, go_ingest_error *e) {
  return go_ingest_capture(ingest_client_new(config, len, format, out), e);
}

ingest_status go_ingest_submit(const ingest_client *client, uint32_t kind, const uint8_t *bytes,
    size_t len, ingest_event_id *id, ingest_receipt **receipt, go_ingest_error *e) {
  return go_ingest_capture(ingest_submit(client, kind, bytes, len, id, receipt), e);
}

ingest_status go_ingest_submit_batch(const ingest_client *client, const uint8_t *bytes, size_t len,
    ingest_batch **batch, go_ingest_error *e) {
  return go_ingest_capture(ingest_submit_batch(client, bytes, len, batch), e);
}

ingest_status go_ingest_close(const ingest_client *client, uint64_t timeout_ms,
    ingest_shutdown_report *report, go_ingest_error *e) {
  return go_ingest_capture(ingest_close(client, timeout_ms, report), e);
}

ingest_status go_ingest_receipt_try(const ingest_receipt *receipt, uint32_t ack, go_ingest_error *e) {
  return go_ingest_capture(ingest_receipt_try(receipt, ack), e);
}

ingest_status go_ingest_watch(const ingest_completions *queue, const ingest_receipt *receipt,
    uint32_t ack, uint64_t timeout_ms, uint64_t tag, go_ingest_error *e) {
  return go_ingest_capture(ingest_completions_watch(queue, receipt, ack, timeout_ms, tag), e);
}

ingest_status go_ingest_watch_flush(const ingest_completions *queue, const ingest_client *client,
    uint64_t timeout_ms, uint64_t tag, go_ingest_error *e) {
  return go_ingest_capture(ingest_completions_watch_flush(queue, client, timeout_ms, tag), e);
}

ingest_status go_ingest_health(const ingest_client *client, ingest_health *out, go_ingest_error *e) {
  return go_ingest_capture(ingest_client_health(client, out), e);
}

ingest_status go_ingest_stats(const ingest_client *client, ingest_stats *out, go_ingest_error *e) {
  return go_ingest_capture(ingest_client_stats(client, out), e);
}

void go_ingest_rejection_copy(const ingest_batch *batch, size_t i, go_ingest_error *e) {
  ingest_rejection r;
  if (ingest_batch_rejection(batch, i, &r) != INGEST_OK) return;
  e->rejected = 1;
  e->index = r.index;
  e->code = r.code;
  e->code_name = go_ingest_strdup(r.code_name);
  e->field = go_ingest_strdup(r.field);
  e->rejection_message = go_ingest_strdup(r.message);
}

// The log callback's trampoline into Go (goIngestLog, log.go).
extern void goIngestLog(uint32_t level, char *target, char *message);
static void go_ingest_log(void *user_data, uint32_t level, const char *target, const char *message) {
  (void)user_data;
  goIngestLog(level, (char *)target, (char *)message);
}
ingest_status go_ingest_set_log(uint32_t max_level, go_ingest_error *e) {
  return go_ingest_capture(ingest_set_log_callback(go_ingest_log, NULL, max_level), e);
}

ingest_status go_ingest_flags_new(const char *text, size_t len, uint32_t format, ingest_flags **out,
    go_ingest_error *e) {
  return go_ingest_capture(ingest_flags_new(text, len, format, out), e);
}

ingest_status go_ingest_flags_assign(const ingest_flags *flags, const char *user, size_t len,
    char **json, go_ingest_error *e) {
  return go_ingest_capture(ingest_flags_assign(flags, user, len, json), e);
}

ingest_status go_ingest_flags_variant(const ingest_flags *flags, const char *flag, size_t flag_len,
    const char *user, size_t user_len, char **variant, go_ingest_error *e) {
  return go_ingest_capture(ingest_flags_variant(flags, flag, flag_len, user, user_len, variant), e);
}
