/*
 * The shared library loaded at run time, as ctypes, cffi and plugin hosts load it:
 * dlopen succeeds (the library's allocator must not need static thread-local storage),
 * and its functions work from the loading thread and from a thread started afterwards.
 *
 * Usage: dlopen_test PATH/libingest.so
 * Exit status 0 when every check held; each failed check prints its line.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ingest.h"

typedef const char *(*version_fn)(void);
typedef ingest_status (*client_new_fn)(const char *, size_t, uint32_t, ingest_client **);
typedef const char *(*last_error_fn)(void);

static client_new_fn client_new;
static last_error_fn last_error;
static int failures = 0;

/* ingest_test.c's CHECK without its last-error line: this program links no symbol of
 * the library, it only looks them up. */
#define CHECK(cond, ...)                                                \
  do {                                                                  \
    if (!(cond)) {                                                      \
      failures++;                                                       \
      fprintf(stderr, "FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                     \
      fprintf(stderr, "\n");                                            \
    }                                                                   \
  } while (0)

/* A configuration the library refuses: the error is allocated and kept per thread. */
static void *refused_config(void *unused) {
  (void)unused;
  static const char config[] = "kafka.brokers = 42\n";
  ingest_client *client = NULL;
  ingest_status status = client_new(config, strlen(config), INGEST_CONFIG_TOML, &client);
  CHECK(status == INGEST_ERR_CONFIG, "status %u", (unsigned)status);
  CHECK(client == NULL, "no client on error");
  const char *message = last_error();
  CHECK(message != NULL && strstr(message, "kafka.brokers") != NULL, "message: %s",
        message ? message : "(null)");
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PATH/libingest.so\n", argv[0]);
    return 2;
  }
  void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (library == NULL) {
    fprintf(stderr, "FAILED: dlopen: %s\n", dlerror());
    return 1;
  }
  version_fn version = (version_fn)dlsym(library, "ingest_version");
  client_new = (client_new_fn)dlsym(library, "ingest_client_new");
  last_error = (last_error_fn)dlsym(library, "ingest_last_error_message");
  if (version == NULL || client_new == NULL || last_error == NULL) {
    fprintf(stderr, "FAILED: dlsym: %s\n", dlerror());
    return 1;
  }
  CHECK(version() != NULL && version()[0] != '\0', "a version string");
  refused_config(NULL);
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, refused_config, NULL) == 0, "a second thread");
  pthread_join(thread, NULL);
  if (failures == 0) printf("dlopen_test: %s %s loaded and used from two threads\n", argv[1], version());
  return failures == 0 ? 0 : 1;
}
