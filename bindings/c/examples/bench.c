/* The C row of scripts/bench: submits every line's value of a KEY<TAB>VALUE file (from
 * `produce-bench write-input`) as a product view, flushes, and appends the rate as a
 * JSON line. It runs as its Rust peer (`produce-bench ingest-core`) does: one event
 * delivered before the clock starts (connection and metadata), and, when the queue is
 * full, a wait for the oldest receipt of a window of 200,000 rather than a sleep.
 * Usage: bench BROKERS TOPIC INPUT LABEL RESULTS */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ingest.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Receipts in flight before the oldest is awaited, as in the Rust peer. */
#define WINDOW 200000

struct window {
  ingest_receipt **receipts;
  size_t oldest, in_flight;
};

/* Waits for the oldest receipt in flight to be delivered and releases it. */
static int wait_oldest(struct window *window) {
  ingest_receipt *receipt = window->receipts[window->oldest];
  ingest_status status = ingest_receipt_wait(receipt, INGEST_ACK_DELIVERED, INGEST_NO_TIMEOUT);
  ingest_receipt_free(receipt);
  window->oldest = (window->oldest + 1) % WINDOW;
  window->in_flight--;
  if (status != INGEST_OK) {
    fprintf(stderr, "receipt: %s: %s\n", ingest_status_name(status), ingest_last_error_message());
    return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: bench BROKERS TOPIC INPUT LABEL RESULTS\n");
    return 2;
  }
  FILE *input = fopen(argv[3], "r");
  if (!input) {
    perror(argv[3]);
    return 2;
  }
  /* Read everything first: the run measures submission and delivery only. */
  size_t count = 0, capacity = 1024;
  char **values = malloc(capacity * sizeof *values);
  size_t *lengths = malloc(capacity * sizeof *lengths);
  char *line = NULL;
  size_t line_capacity = 0;
  ssize_t n;
  while ((n = getline(&line, &line_capacity, input)) > 0) {
    char *tab = strchr(line, '\t');
    if (!tab) continue;
    if (count == capacity) {
      capacity *= 2;
      values = realloc(values, capacity * sizeof *values);
      lengths = realloc(lengths, capacity * sizeof *lengths);
    }
    size_t len = (size_t)(line + n - (tab + 1));
    if (len > 0 && tab[len] == '\n') len--;
    values[count] = malloc(len);
    memcpy(values[count], tab + 1, len);
    lengths[count++] = len;
  }
  free(line);
  fclose(input);

  char config[512];
  snprintf(config, sizeof config,
           "source = \"c-bench\"\n[kafka]\nbrokers = \"%s\"\n[dead_letter]\nenabled = false\n"
           "[topics.product_view]\nname = \"%s\"\n",
           argv[1], argv[2]);
  ingest_client *client = NULL;
  if (ingest_client_new(config, strlen(config), INGEST_CONFIG_TOML, &client) != INGEST_OK) {
    fprintf(stderr, "config: %s\n", ingest_last_error_message());
    return 1;
  }
  if (count == 0) {
    fprintf(stderr, "%s: no events\n", argv[3]);
    return 2;
  }
  /* Connect and warm up outside the measurement. */
  ingest_receipt *warm_up = NULL;
  if (ingest_submit(client, INGEST_PRODUCT_VIEW, (const uint8_t *)values[0], lengths[0], NULL, &warm_up) !=
          INGEST_OK ||
      ingest_receipt_wait(warm_up, INGEST_ACK_DELIVERED, 30000) != INGEST_OK) {
    fprintf(stderr, "warm-up event not delivered in 30 s (is Kafka running?): %s\n", ingest_last_error_message());
    return 1;
  }
  ingest_receipt_free(warm_up);
  ingest_stats before;
  ingest_client_stats(client, &before);

  /* Receipts in flight, oldest first (a ring). */
  struct window window = {calloc(WINDOW, sizeof(ingest_receipt *)), 0, 0};
  double started = now();
  for (size_t i = 0; i < count; i++) {
    ingest_status status;
    ingest_receipt *receipt = NULL;
    while ((status = ingest_submit(client, INGEST_PRODUCT_VIEW, (const uint8_t *)values[i], lengths[i], NULL,
                                   &receipt)) == INGEST_ERR_QUEUE_FULL) {
      /* Back-pressure: wait for the oldest receipt (or a moment), then retry. */
      if (window.in_flight == 0) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
      } else if (!wait_oldest(&window)) {
        return 1;
      }
    }
    if (status != INGEST_OK) {
      fprintf(stderr, "event %zu: %s: %s\n", i, ingest_status_name(status), ingest_last_error_message());
      return 1;
    }
    window.receipts[(window.oldest + window.in_flight) % WINDOW] = receipt;
    window.in_flight++;
    if (window.in_flight == WINDOW && !wait_oldest(&window)) return 1;
  }
  if (ingest_flush(client, INGEST_NO_TIMEOUT) != INGEST_OK) {
    fprintf(stderr, "flush: %s\n", ingest_last_error_message());
    return 1;
  }
  double seconds = now() - started;
  ingest_stats stats;
  ingest_client_stats(client, &stats);
  stats.delivered -= before.delivered;
  while (window.in_flight > 0) wait_oldest(&window);
  free(window.receipts);
  ingest_close(client, 30000, NULL);
  ingest_client_free(client);
  double rate = (double)stats.delivered / seconds;
  printf("%s (c): %llu events in %.2f s, %.0f events/s\n", argv[4], (unsigned long long)stats.delivered, seconds,
         rate);
  FILE *results = fopen(argv[5], "a");
  if (!results) {
    perror(argv[5]);
    return 1;
  }
  fprintf(results,
          "{\"label\": \"%s\", \"tool\": \"c\", \"events\": %zu, \"delivered\": %llu, \"seconds\": %.3f, "
          "\"events_per_s\": %.1f}\n",
          argv[4], count, (unsigned long long)stats.delivered, seconds, rate);
  fclose(results);
  for (size_t i = 0; i < count; i++) free(values[i]);
  free(values);
  free(lengths);
  return 0;
}
