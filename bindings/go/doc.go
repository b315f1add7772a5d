// Package ingest is shopstream's ingest-core for Go: validate e-commerce events
// (product views, cart changes, purchases, searches) against the event contract, and
// deliver them to Kafka, keyed by user, with an idempotent acks=all producer and an
// optional disk buffer that keeps them through crashes and Kafka outages. It calls
// the library's C ABI (bindings/c) through cgo and links it statically.
//
// Build the library first (go generate runs the same command):
//
//	./build-lib.sh   # cargo build --profile release-ffi -p ingest-ffi, copied to lib/
//
// A Client is safe for concurrent use. Submit validates and queues an event and
// returns a Receipt; Receipt.Wait blocks the calling goroutine, not a thread, until
// the event is Persisted or Delivered, or the context ends. Errors are *Error values
// (compare with errors.Is against ErrQueueFull, ErrClosed, ...) or, for a refused
// event, a *ValidationError with the code, field and message.
//
// Flags assigns users to the variants of the edge agent's feature flags, from the same
// flags file and with the same result as the agent and every other binding.
package ingest

//go:generate ./build-lib.sh
