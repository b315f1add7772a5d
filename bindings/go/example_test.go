package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"shopstream/ingest"
)

// The README's ten lines, against the test's broker (the default topics).
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := os.Getenv("KAFKA_BOOTSTRAP")

	client, err := ingest.New(ingest.Config{Brokers: brokers})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	id, err := client.SubmitWait(ctx, ingest.ProductView, []byte(`{"user_id":"u1","product_id":"sku-1"}`), ingest.Delivered)
	var invalid *ingest.ValidationError
	if errors.As(err, &invalid) {
		log.Fatalf("refused: %s at %s: %s", invalid.CodeName, invalid.Field, invalid.Message)
	}
	fmt.Println(len(id.String()), err)
	// Output: 36 <nil>
}
