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

// Feature flags assigned in-process, as the edge agent's GET /api/flags assigns them.
func ExampleFlags() {
	flags, err := ingest.NewFlagsFromTOML(`
[[flags]]
name = "checkout_v2"
variants = [{ name = "control", percent = 90 }, { name = "treatment", percent = 10 }]
`)
	if err != nil {
		log.Fatal(err) // ingest: config: flags[0].variants: the percentages add up to ...
	}
	defer flags.Close()
	variant, ok, err := flags.Variant("checkout_v2", "user-1")
	fmt.Println(variant, ok, err)
	assigned, err := flags.Assign("user-1")
	fmt.Println(assigned, err)
	// Output:
	// control true <nil>
	// map[checkout_v2:control] <nil>
}
