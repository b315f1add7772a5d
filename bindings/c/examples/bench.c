/* The C row of scripts/bench: submits every line's value of a KEY<TAB>VALUE file (from
 * `produce-bench write-input`) as a product view, flushes, and appends the rate as a
 * JSON line. Usage: bench BROKERS TOPIC INPUT LABEL RESULTS */
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
  double started = now();
  for (size_t i = 0; i < count; i++) {
    ingest_status status;
    while ((status = ingest_submit(client, INGEST_PRODUCT_VIEW, (const uint8_t *)values[i], lengths[i], NULL,
                                   NULL)) == INGEST_ERR_QUEUE_FULL) {
      struct timespec pause = {0, 1000000};
      nanosleep(&pause, NULL);
    }
    if (status != INGEST_OK) {
      fprintf(stderr, "event %zu: %s: %s\n", i, ingest_status_name(status), ingest_last_error_message());
      return 1;
    }
  }
  if (ingest_flush(client, INGEST_NO_TIMEOUT) != INGEST_OK) {
    fprintf(stderr, "flush: %s\n", ingest_last_error_message());
    return 1;
  }
  double seconds = now() - started;
  ingest_stats stats;
  ingest_client_stats(client, &stats);
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
