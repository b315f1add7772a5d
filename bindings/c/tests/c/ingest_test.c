/*
 * The C ABI exercised from C: create from TOML and JSON, submit every event type,
 * rejections with code, field and message, persisted and delivered acknowledgements
 * (blocking, polled and through a completion queue), batches, flush, close and its
 * report, and misuse (NULL pointers, bad arguments, a 64 MiB payload, double close,
 * use after close, submissions from many threads at once); feature flags assigning the
 * documented test vectors.
 *
 * Usage: ingest_test CONFIG.toml CONFIG.json MANIFEST
 *   CONFIG.toml  configuration with a disk buffer; CONFIG.json one without
 *   MANIFEST     written: one line per accepted event, "kind<TAB>event_id<TAB>key<TAB>payload",
 *                which tests/c_programs.rs then reads back from Kafka and compares.
 *
 * Exit status 0 when every check held; each failed check prints its line.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

#define WAIT_MS 120000
#define THREADS 8
#define PER_THREAD 25

static int failures = 0;
static FILE *manifest = NULL;
static pthread_mutex_t manifest_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_lines = 0;

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      failures++;                                                             \
      fprintf(stderr, "FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
      fprintf(stderr, __VA_ARGS__);                                           \
      fprintf(stderr, " (last error: %s)\n", ingest_last_error_message());    \
    }                                                                         \
  } while (0)

#define CHECK_STATUS(call, want)                                              \
  do {                                                                        \
    ingest_status got_ = (call);                                              \
    CHECK(got_ == (want), "%s returned %s, expected %s", #call,               \
          ingest_status_name(got_), ingest_status_name(want));                \
  } while (0)

static const char *kind_names[] = {"product_view", "cart", "purchase", "search"};

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)size + 1);
  if (text && fread(text, 1, (size_t)size, f) != (size_t)size) {
    free(text);
    text = NULL;
  }
  fclose(f);
  if (text) text[size] = '\0';
  *len = (size_t)size;
  return text;
}

static void record(uint32_t kind, const ingest_event_id *id, const char *key, const char *payload) {
  char text[37];
  if (ingest_event_id_format(id, text, sizeof text) != INGEST_OK) {
    failures++;
    return;
  }
  pthread_mutex_lock(&manifest_lock);
  fprintf(manifest, "%s\t%s\t%s\t%s\n", kind_names[kind], text, key, payload);
  pthread_mutex_unlock(&manifest_lock);
}

static void on_log(void *user_data, uint32_t level, const char *target, const char *message) {
  (void)level;
  atomic_int *lines = user_data;
  if (target && message && message[0]) atomic_fetch_add(lines, 1);
}

/* Submits one event, waits for `ack`, records it in the manifest. */
static void submit_and_wait(const ingest_client *client, uint32_t kind, const char *key,
                            const char *payload, uint32_t ack) {
  ingest_event_id id;
  ingest_receipt *receipt = NULL;
  ingest_status status = ingest_submit(client, kind, (const uint8_t *)payload, strlen(payload), &id, &receipt);
  CHECK(status == INGEST_OK, "submit %s: %s", kind_names[kind], ingest_status_name(status));
  if (status != INGEST_OK) return;
  CHECK(ingest_receipt_event_count(receipt) == 1, "one event");
  CHECK_STATUS(ingest_receipt_wait(receipt, INGEST_ACK_ACCEPTED, 0), INGEST_OK);
  CHECK_STATUS(ingest_receipt_wait(receipt, ack, WAIT_MS), INGEST_OK);
  CHECK_STATUS(ingest_receipt_try(receipt, ack), INGEST_OK);
  ingest_receipt_free(receipt);
  record(kind, &id, key, payload);
}

static void misuse_without_a_client(void) {
  ingest_client *client = (ingest_client *)0x1;
  CHECK_STATUS(ingest_client_new(NULL, 5, INGEST_CONFIG_TOML, &client), INGEST_ERR_INVALID_ARGUMENT);
  CHECK(client == NULL, "out is reset on failure");
  CHECK_STATUS(ingest_client_new("", 0, INGEST_CONFIG_TOML, NULL), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_client_new("", 0, 7, &client), INGEST_ERR_INVALID_ARGUMENT);
  CHECK(strstr(ingest_last_error_message(), "format") != NULL, "names the format");
  const char bad[] = "[kafka]\nlinger_ms = \"soon\"\n";
  CHECK_STATUS(ingest_client_new(bad, strlen(bad), INGEST_CONFIG_TOML, &client), INGEST_ERR_CONFIG);
  CHECK(strstr(ingest_last_error_message(), "linger_ms") != NULL, "names the key");
  const char not_utf8[] = {'[', (char)0xff, ']'};
  CHECK_STATUS(ingest_client_new(not_utf8, 3, INGEST_CONFIG_TOML, &client), INGEST_ERR_INVALID_ARGUMENT);

  /* The message into a caller's buffer, cut to fit. */
  char small[8];
  size_t full = ingest_last_error_copy(small, sizeof small);
  CHECK(full > sizeof small && strlen(small) == sizeof small - 1, "cut to %zu of %zu", strlen(small), full);
  CHECK(ingest_last_error_copy(NULL, 0) == full, "length only");

  ingest_event_id id;
  CHECK_STATUS(ingest_submit(NULL, INGEST_CART, (const uint8_t *)"{}", 2, &id, NULL), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_flush(NULL, 0), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_close(NULL, 0, NULL), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_receipt_wait(NULL, INGEST_ACK_DELIVERED, 0), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_receipt_try(NULL, INGEST_ACK_DELIVERED), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_client_health(NULL, NULL), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_event_id_format(&id, NULL, 37), INGEST_ERR_INVALID_ARGUMENT);
  CHECK(ingest_batch_accepted(NULL) == 0 && ingest_batch_receipt(NULL) == NULL, "NULL batch");
  CHECK(ingest_completions_poll(NULL, NULL, 0) == 0, "NULL queue");
  ingest_client_free(NULL);
  ingest_receipt_free(NULL);
  ingest_batch_free(NULL);
  ingest_completions_free(NULL);
  CHECK(strcmp(ingest_status_name(12345), "unknown") == 0, "unknown status");
}

static void rejections(const ingest_client *client) {
  const char *no_product = "{\"user_id\":\"c-u1\"}";
  ingest_event_id id;
  ingest_receipt *receipt = (ingest_receipt *)0x1;
  CHECK_STATUS(ingest_submit(client, INGEST_PRODUCT_VIEW, (const uint8_t *)no_product, strlen(no_product), &id, &receipt),
               INGEST_ERR_INVALID_EVENT);
  CHECK(receipt == NULL, "no receipt for a rejected event");
  ingest_rejection rejection;
  CHECK(ingest_last_rejection(&rejection) == 1, "a rejection is available");
  CHECK(rejection.code == 9, "missing_field is 9, got %u", rejection.code);
  CHECK(strcmp(rejection.code_name, "missing_field") == 0, "code name %s", rejection.code_name);
  CHECK(rejection.field && strcmp(rejection.field, "product_id") == 0, "field %s", rejection.field ? rejection.field : "NULL");
  CHECK(rejection.message && rejection.message[0], "a message");

  /* Whole-document problems carry no field. */
  CHECK_STATUS(ingest_submit(client, INGEST_SEARCH, (const uint8_t *)"{oops", 5, NULL, NULL), INGEST_ERR_INVALID_EVENT);
  CHECK(ingest_last_rejection(&rejection) == 1 && rejection.code == 2 && rejection.field == NULL, "invalid_json");

  /* A 64 MiB payload is refused by size, quickly and without a crash. */
  size_t huge_len = (size_t)64 << 20;
  uint8_t *huge = malloc(huge_len);
  CHECK(huge != NULL, "allocated");
  if (huge) {
    memset(huge, ' ', huge_len);
    huge[0] = '{';
    huge[huge_len - 1] = '}';
    CHECK_STATUS(ingest_submit(client, INGEST_CART, huge, huge_len, NULL, NULL), INGEST_ERR_INVALID_EVENT);
    CHECK(ingest_last_rejection(&rejection) == 1 && strcmp(rejection.code_name, "event_too_large") == 0,
          "event_too_large");
    CHECK_STATUS(ingest_submit_batch(client, huge, huge_len, &(ingest_batch *){NULL}), INGEST_ERR_INVALID_EVENT);
    free(huge);
  }

  /* Bad arguments. */
  CHECK_STATUS(ingest_submit(client, 9, (const uint8_t *)"{}", 2, NULL, NULL), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_submit(client, INGEST_CART, NULL, 5, NULL, NULL), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_submit(client, INGEST_CART, NULL, 0, NULL, NULL), INGEST_ERR_INVALID_EVENT);
  CHECK(ingest_last_rejection(&rejection) == 1 && strcmp(rejection.code_name, "empty_body") == 0, "empty_body");
  CHECK_STATUS(ingest_submit_batch(client, (const uint8_t *)"[]", 2, NULL), INGEST_ERR_INVALID_ARGUMENT);
}

static void batch_and_completions(const ingest_client *client) {
  const char *lines[] = {
      "{\"type\":\"search\",\"user_id\":\"c-u5\",\"query\":\"red shoes\"}",
      "{\"type\":\"cart\",\"user_id\":\"c-u6\"}",
      "{\"type\":\"product_view\",\"user_id\":\"c-u7\",\"product_id\":\"sku-7\"}",
  };
  char body[512];
  snprintf(body, sizeof body, "%s\n%s\n%s\n", lines[0], lines[1], lines[2]);
  ingest_batch *batch = NULL;
  CHECK_STATUS(ingest_submit_batch(client, (const uint8_t *)body, strlen(body), &batch), INGEST_OK);
  if (!batch) return;
  CHECK(ingest_batch_accepted(batch) == 2, "two accepted");
  CHECK(ingest_batch_rejected(batch) == 1, "one rejected");
  ingest_rejection rejection;
  CHECK_STATUS(ingest_batch_rejection(batch, 0, &rejection), INGEST_OK);
  CHECK(rejection.index == 1 && rejection.field != NULL, "the cart event, at a field");
  CHECK_STATUS(ingest_batch_rejection(batch, 1, &rejection), INGEST_ERR_INVALID_ARGUMENT);
  const ingest_event_id *ids = ingest_batch_event_ids(batch);
  record(INGEST_SEARCH, &ids[0], "c-u5", lines[0]);
  record(INGEST_PRODUCT_VIEW, &ids[1], "c-u7", lines[2]);

  ingest_completions *queue = ingest_completions_new(0);
  ingest_receipt *receipt = ingest_batch_receipt(batch);
  ingest_batch_free(batch);
  CHECK(ingest_receipt_event_count(receipt) == 2, "the receipt covers the accepted events");
  CHECK_STATUS(ingest_completions_watch(queue, receipt, INGEST_ACK_DELIVERED, WAIT_MS, 1001), INGEST_OK);
  CHECK_STATUS(ingest_completions_watch(queue, receipt, 3, WAIT_MS, 1), INGEST_ERR_INVALID_ARGUMENT);
  ingest_receipt_free(receipt);
  CHECK_STATUS(ingest_completions_watch_flush(queue, client, WAIT_MS, 1002), INGEST_OK);
  ingest_completion done[4];
  size_t got = 0;
  for (int i = 0; i < 100 && got < 2; i++) {
    got += ingest_completions_wait(queue, done + got, 4 - got, 2000);
  }
  CHECK(got == 2, "two completions, got %zu", got);
  uint64_t tags = 0;
  for (size_t i = 0; i < got; i++) {
    CHECK(done[i].status == INGEST_OK, "tag %llu: %s", (unsigned long long)done[i].tag, ingest_status_name(done[i].status));
    tags += done[i].tag;
  }
  CHECK(tags == 2003, "the tags given");
  CHECK(ingest_completions_poll(queue, done, 4) == 0 && ingest_completions_waiting(queue) == 0, "drained");
  ingest_completions_free(queue);
}

struct worker {
  const ingest_client *client;
  int index;
  int delivered;
};

static void *submit_many(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    char key[32], payload[128];
    snprintf(key, sizeof key, "c-t%d-%d", w->index, i % 5);
    snprintf(payload, sizeof payload, "{\"user_id\":\"%s\",\"product_id\":\"sku-%d\"}", key, i);
    ingest_event_id id;
    ingest_receipt *receipt = NULL;
    ingest_status status;
    do {
      status = ingest_submit(w->client, INGEST_PRODUCT_VIEW, (const uint8_t *)payload, strlen(payload), &id, &receipt);
    } while (status == INGEST_ERR_QUEUE_FULL);
    if (status != INGEST_OK) continue;
    if (ingest_receipt_wait(receipt, INGEST_ACK_DELIVERED, WAIT_MS) == INGEST_OK) w->delivered++;
    ingest_receipt_free(receipt);
    record(INGEST_PRODUCT_VIEW, &id, key, payload);
  }
  return NULL;
}

static void many_threads(const ingest_client *client) {
  pthread_t threads[THREADS];
  struct worker workers[THREADS];
  for (int t = 0; t < THREADS; t++) {
    workers[t] = (struct worker){client, t, 0};
    CHECK(pthread_create(&threads[t], NULL, submit_many, &workers[t]) == 0, "thread %d", t);
  }
  int delivered = 0;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    delivered += workers[t].delivered;
  }
  CHECK(delivered == THREADS * PER_THREAD, "%d of %d delivered", delivered, THREADS * PER_THREAD);
}

static void close_and_misuse(const ingest_client *client, int with_buffer) {
  ingest_health health;
  CHECK_STATUS(ingest_client_health(client, &health), INGEST_OK);
  CHECK(health.ready == 1 && health.kafka_reachable == 1 && health.has_buffer == (uint8_t)with_buffer, "healthy");
  ingest_stats stats;
  CHECK_STATUS(ingest_client_stats(client, &stats), INGEST_OK);
  CHECK(stats.accepted > 0 && stats.delivered > 0, "counted: %llu accepted", (unsigned long long)stats.accepted);
  CHECK_STATUS(ingest_flush(client, WAIT_MS), INGEST_OK);

  ingest_shutdown_report report = {99, 99, 99, 0};
  CHECK_STATUS(ingest_close(client, WAIT_MS, &report), INGEST_OK);
  CHECK(report.undelivered == 0 && report.lost == 0 && report.kept_in_buffer == 0, "drained: %llu undelivered",
        (unsigned long long)report.undelivered);
  CHECK_STATUS(ingest_close(client, WAIT_MS, &report), INGEST_ERR_SHUTTING_DOWN);
  const char *event = "{\"user_id\":\"c-late\",\"product_id\":\"sku-1\"}";
  CHECK_STATUS(ingest_submit(client, INGEST_PRODUCT_VIEW, (const uint8_t *)event, strlen(event), NULL, NULL),
               INGEST_ERR_SHUTTING_DOWN);
  CHECK_STATUS(ingest_flush(client, 10), INGEST_ERR_SHUTTING_DOWN);
  CHECK_STATUS(ingest_client_health(client, &health), INGEST_OK);
  CHECK(health.shutting_down == 1 && health.ready == 0, "closed");
}

/* The flags of the documented test vectors (docs/edge-agent.md, "Feature flags"), with
 * checkout_v2's two percentages to fill in. */
static const char flags_template[] =
    "[[flags]]\n"
    "name = \"checkout_v2\"\n"
    "variants = [{ name = \"control\", percent = %d }, { name = \"treatment\", percent = %d }]\n"
    "\n"
    "[[flags]]\n"
    "name = \"search_ranking\"\n"
    "variants = [{ name = \"bm25\", percent = 50 }, { name = \"learned\", percent = 50 }]\n";

/* Flags from the template with checkout_v2 at control/treatment percent; NULL when refused. */
static ingest_flags *flags_with(int control, int treatment, ingest_status want) {
  char text[sizeof flags_template + 8];
  int len = snprintf(text, sizeof text, flags_template, control, treatment);
  ingest_flags *flags = (ingest_flags *)0x1;
  CHECK_STATUS(ingest_flags_new(text, (size_t)len, INGEST_CONFIG_TOML, &flags), want);
  return flags;
}

static void check_variant(const ingest_flags *flags, const char *flag, const char *user, const char *want) {
  char *variant = (char *)0x1;
  CHECK_STATUS(ingest_flags_variant(flags, flag, strlen(flag), user, strlen(user), &variant), INGEST_OK);
  if (variant == (char *)0x1) return;
  CHECK(want ? variant && strcmp(variant, want) == 0 : variant == NULL, "%s of %s: %s, expected %s", flag, user,
        variant ? variant : "NULL", want ? want : "NULL");
  ingest_string_free(variant);
}

static void feature_flags(void) {
  /* Buckets: checkout_v2/user-1 6666 and user-2 4270 (control owns 0-8999),
   * search_ranking/user-1 9624 (learned owns 5000-9999). */
  ingest_flags *flags = flags_with(90, 10, INGEST_OK);
  CHECK(ingest_flags_len(flags) == 2, "two flags, not %zu", ingest_flags_len(flags));
  char *json = NULL;
  CHECK_STATUS(ingest_flags_assign(flags, "user-1", 6, &json), INGEST_OK);
  CHECK(json && strcmp(json, "{\"checkout_v2\":\"control\",\"search_ranking\":\"learned\"}") == 0, "assigned %s",
        json ? json : "NULL");
  ingest_string_free(json);
  check_variant(flags, "checkout_v2", "user-1", "control");
  check_variant(flags, "checkout_v2", "user-2", "control");
  check_variant(flags, "search_ranking", "user-1", "learned");
  check_variant(flags, "no_such_flag", "user-1", NULL);
  ingest_flags_free(flags);

  /* 90/10 to 60/40: the users of buckets 6000-8999 move to treatment, user-1 among them. */
  flags = flags_with(60, 40, INGEST_OK);
  check_variant(flags, "checkout_v2", "user-1", "treatment");
  check_variant(flags, "checkout_v2", "user-2", "control");
  ingest_flags_free(flags);

  /* The same flags as JSON. */
  const char json_text[] =
      "{\"flags\": [{\"name\": \"checkout_v2\", \"variants\": [{\"name\": \"control\", \"percent\": 90},"
      " {\"name\": \"treatment\", \"percent\": 10}]}]}";
  flags = NULL;
  CHECK_STATUS(ingest_flags_new(json_text, strlen(json_text), INGEST_CONFIG_JSON, &flags), INGEST_OK);
  check_variant(flags, "checkout_v2", "user-1", "control");
  ingest_flags_free(flags);

  /* Percentages adding up to 90 are refused, naming the flag's variants. */
  flags = flags_with(80, 10, INGEST_ERR_CONFIG);
  CHECK(flags == NULL, "out is reset on failure");
  CHECK(strstr(ingest_last_error_message(), "flags[0].variants") != NULL, "names flags[0].variants");
  const char unknown_key[] = "[[flags]]\nnme = \"f\"\n";
  CHECK_STATUS(ingest_flags_new(unknown_key, strlen(unknown_key), INGEST_CONFIG_TOML, &flags), INGEST_ERR_CONFIG);
  CHECK(strstr(ingest_last_error_message(), "line 2 column 1") != NULL, "names the line and column");

  /* Misuse. */
  CHECK_STATUS(ingest_flags_new(NULL, 3, INGEST_CONFIG_TOML, &flags), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_flags_new("", 0, INGEST_CONFIG_TOML, NULL), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_flags_new("", 0, 7, &flags), INGEST_ERR_INVALID_ARGUMENT);
  json = (char *)0x1;
  CHECK_STATUS(ingest_flags_assign(NULL, "u", 1, &json), INGEST_ERR_INVALID_ARGUMENT);
  CHECK(json == NULL, "out is reset on failure");
  flags = flags_with(90, 10, INGEST_OK);
  const char not_utf8[] = {'u', (char)0xff};
  CHECK_STATUS(ingest_flags_assign(flags, not_utf8, 2, &json), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_flags_assign(flags, "u", 1, NULL), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_flags_variant(flags, "checkout_v2", 11, "u", 1, NULL), INGEST_ERR_INVALID_ARGUMENT);
  CHECK(ingest_flags_len(NULL) == 0, "NULL flags");
  ingest_flags_free(flags);
  ingest_flags_free(NULL);
  ingest_string_free(NULL);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s CONFIG.toml CONFIG.json MANIFEST\n", argv[0]);
    return 2;
  }
  manifest = fopen(argv[3], "w");
  if (!manifest) return 2;
  CHECK(ingest_abi_version() == INGEST_ABI_VERSION, "ABI %u", ingest_abi_version());
  CHECK(strlen(ingest_version()) > 0, "a version");
  CHECK_STATUS(ingest_set_log_callback(on_log, &log_lines, 9), INGEST_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ingest_set_log_callback(on_log, &log_lines, INGEST_LOG_INFO), INGEST_OK);

  misuse_without_a_client();
  feature_flags();

  size_t toml_len = 0, json_len = 0;
  char *toml = read_file(argv[1], &toml_len);
  char *json = read_file(argv[2], &json_len);
  CHECK(toml && json, "configuration files read");
  ingest_client *disk = NULL, *memory = NULL;
  CHECK_STATUS(ingest_client_new(toml, toml_len, INGEST_CONFIG_TOML, &disk), INGEST_OK);
  CHECK_STATUS(ingest_client_new(json, json_len, INGEST_CONFIG_JSON, &memory), INGEST_OK);
  free(toml);
  free(json);
  if (!disk || !memory) {
    ingest_client_free(disk);
    ingest_client_free(memory);
    fclose(manifest);
    return 1;
  }

  /* Every event type, persisted to the disk buffer and then delivered. */
  submit_and_wait(disk, INGEST_PRODUCT_VIEW, "c-u1", "{\"user_id\":\"c-u1\",\"product_id\":\"sku-1\"}", INGEST_ACK_PERSISTED);
  submit_and_wait(disk, INGEST_CART, "c-u2",
                  "{\"user_id\":\"c-u2\",\"action\":\"add\",\"product_id\":\"sku-2\",\"quantity\":2}",
                  INGEST_ACK_DELIVERED);
  submit_and_wait(disk, INGEST_PURCHASE, "c-u3",
                  "{\"user_id\":\"c-u3\",\"order_id\":\"o-3\",\"currency\":\"EUR\",\"total\":12.5,"
                  "\"items\":[{\"product_id\":\"sku-3\",\"quantity\":1,\"price\":12.5}]}",
                  INGEST_ACK_PERSISTED);
  submit_and_wait(disk, INGEST_SEARCH, "c-u4", "{\"user_id\":\"c-u4\",\"query\":\"blue socks\"}", INGEST_ACK_DELIVERED);

  rejections(disk);
  batch_and_completions(memory);
  many_threads(memory);

  close_and_misuse(disk, 1);
  close_and_misuse(memory, 0);
  ingest_client_free(disk);
  ingest_client_free(memory);

  CHECK(atomic_load(&log_lines) > 0, "the log callback received the library's logs");
  CHECK_STATUS(ingest_set_log_callback(NULL, NULL, INGEST_LOG_OFF), INGEST_OK);
  fclose(manifest);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("all checks passed\n");
  return 0;
}
