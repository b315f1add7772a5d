/* Submit one product view and wait until Kafka has it. Usage: submit BROKERS */
#include <stdio.h>
#include <string.h>
#include "ingest.h"

int main(int argc, char **argv) {
  char config[256];
  snprintf(config, sizeof config, "[kafka]\nbrokers = \"%s\"\n", argc > 1 ? argv[1] : "127.0.0.1:9092");
  ingest_client *client = NULL;
  if (ingest_client_new(config, strlen(config), INGEST_CONFIG_TOML, &client) != INGEST_OK) {
    fprintf(stderr, "config: %s\n", ingest_last_error_message());
    return 1;
  }
  const char *event = "{\"user_id\":\"u1\",\"product_id\":\"sku-1\"}";
  ingest_event_id id;
  ingest_receipt *receipt = NULL;
  ingest_status status = ingest_submit(client, INGEST_PRODUCT_VIEW, (const uint8_t *)event, strlen(event), &id, &receipt);
  if (status == INGEST_OK) status = ingest_receipt_wait(receipt, INGEST_ACK_DELIVERED, 30000);
  if (status == INGEST_OK) {
    char text[37];
    ingest_event_id_format(&id, text, sizeof text);
    printf("delivered %s\n", text);
  } else {
    fprintf(stderr, "%s: %s\n", ingest_status_name(status), ingest_last_error_message());
  }
  ingest_receipt_free(receipt);
  ingest_close(client, 30000, NULL);
  ingest_client_free(client);
  return status == INGEST_OK ? 0 : 1;
}
