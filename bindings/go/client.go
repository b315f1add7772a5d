package ingest

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// DefaultCloseTimeout is how long Close lets the client deliver what it holds.
const DefaultCloseTimeout = 30 * time.Second

// Config is a client's configuration: the common settings as fields, any other key
// of the library's configuration (docs/configuration.md) in Options.
type Config struct {
	// Brokers: Kafka's bootstrap brokers, host:port separated by commas (kafka.brokers).
	Brokers string
	// BufferDir: a directory for the disk buffer (buffer.type = "log", buffer.dir).
	// Empty: events wait in memory only.
	BufferDir string
	// Source: the source header of every record (source). Empty: the host name.
	Source string
	// Options: other keys by their dotted path, e.g. "kafka.linger_ms": 5 or
	// "topics.product_view.name": "shop-views". A field above wins over the same key
	// here.
	Options map[string]any
}

// json renders the configuration as the library's JSON form.
func (c Config) json() ([]byte, error) {
	root := map[string]any{}
	set := func(path string, value any) error {
		parts := strings.Split(path, ".")
		node := root
		for i, part := range parts {
			if part == "" {
				return fmt.Errorf("option %q has an empty part", path)
			}
			if i == len(parts)-1 {
				node[part] = value
				break
			}
			child, ok := node[part].(map[string]any)
			if !ok {
				if _, taken := node[part]; taken {
					return fmt.Errorf("option %q: %q is a value, not a table", path, strings.Join(parts[:i+1], "."))
				}
				child = map[string]any{}
				node[part] = child
			}
			node = child
		}
		return nil
	}
	for path, value := range c.Options {
		if err := set(path, value); err != nil {
			return nil, err
		}
	}
	fields := []struct {
		path, value string
	}{{"kafka.brokers", c.Brokers}, {"source", c.Source}, {"buffer.dir", c.BufferDir}}
	for _, f := range fields {
		if f.value != "" {
			if err := set(f.path, f.value); err != nil {
				return nil, err
			}
		}
	}
	if c.BufferDir != "" {
		if err := set("buffer.type", "log"); err != nil {
			return nil, err
		}
	}
	return json.Marshal(root)
}

// Client is one ingestor: validation, a bounded queue, an optional disk buffer and a
// Kafka producer, in this process. Safe for concurrent use by many goroutines. Close
// it to deliver what it holds; a client that becomes unreachable unclosed is closed
// in the background with DefaultCloseTimeout.
type Client struct {
	*client
}

// client is the state the completion goroutine shares; Client wraps it so that an
// unreachable Client can be noticed while that goroutine runs.
type client struct {
	mu     sync.RWMutex // read: any call on ptr; write: closing
	ptr    *C.ingest_client
	queue  *completions
	closed chan struct{} // closed once the client is closed
	report ShutdownReport
}

// New creates a client. It starts the library's delivery threads but does not contact
// Kafka: an unreachable cluster shows in delivery and Health, not here.
func New(cfg Config) (*Client, error) {
	text, err := cfg.json()
	if err != nil {
		return nil, &Error{Status: StatusConfig, Message: err.Error()}
	}
	return newClient(text, C.INGEST_CONFIG_JSON)
}

// NewFromTOML creates a client from configuration text in TOML, with the keys of
// docs/configuration.md (the edge agent's [ingest] section).
func NewFromTOML(text string) (*Client, error) {
	return newClient([]byte(text), C.INGEST_CONFIG_TOML)
}

// NewFromJSON creates a client from configuration text in JSON (an object with the
// same keys as the TOML form).
func NewFromJSON(text []byte) (*Client, error) {
	return newClient(text, C.INGEST_CONFIG_JSON)
}

func newClient(text []byte, format C.uint32_t) (*Client, error) {
	if v := C.ingest_abi_version(); v != C.INGEST_ABI_VERSION {
		return nil, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("the linked library implements ABI %d, this package needs %d", v, C.INGEST_ABI_VERSION)}
	}
	var e C.go_ingest_error
	var ptr *C.ingest_client
	cText := C.CBytes(text)
	defer C.free(cText)
	if status := C.go_ingest_client_new((*C.char)(cText), C.size_t(len(text)), format, &ptr, &e); status != C.INGEST_OK {
		return nil, takeError(status, &e)
	}
	inner := &client{ptr: ptr, queue: newCompletions(), closed: make(chan struct{})}
	c := &Client{inner}
	runtime.AddCleanup(c, func(inner *client) { go inner.close(DefaultCloseTimeout) }, inner)
	return c, nil
}

// borrow takes the read lock for a call on the library's client, or fails when closed.
// Release with c.mu.RUnlock.
func (c *client) borrow() error {
	c.mu.RLock()
	if c.ptr == nil {
		c.mu.RUnlock()
		return &Error{Status: StatusShuttingDown, Message: "the client is closed"}
	}
	return nil
}

// Submit validates one event of type kind (payload is its JSON, sent to Kafka byte
// for byte) and queues it. The receipt tells when it reaches an acknowledgement
// level; Accepted is reached already. A refused event is a *ValidationError; a full
// queue is ErrQueueFull.
func (c *Client) Submit(kind Kind, payload []byte) (*Receipt, error) {
	if err := c.borrow(); err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	var e C.go_ingest_error
	var id C.ingest_event_id
	var receipt *C.ingest_receipt
	bytes, n := bytesArg(payload)
	if status := C.go_ingest_submit(c.ptr, C.uint32_t(kind), bytes, n, &id, &receipt, &e); status != C.INGEST_OK {
		return nil, takeError(status, &e)
	}
	return newReceipt(c.client, receipt, []EventID{eventID(id)}), nil
}

// SubmitWait submits one event and waits until it reaches ack, or ctx ends.
func (c *Client) SubmitWait(ctx context.Context, kind Kind, payload []byte, ack Ack) (EventID, error) {
	receipt, err := c.Submit(kind, payload)
	if err != nil {
		return EventID{}, err
	}
	return receipt.ID(), receipt.Wait(ctx, ack)
}

// BatchResult is what a batch submission did: the accepted events' ids (in batch
// order), one receipt for all of them, and the rejected events.
type BatchResult struct {
	IDs        []EventID
	Receipt    *Receipt
	Rejections []*ValidationError
}

// SubmitBatch validates a batch body, NDJSON or a JSON array of events each naming
// its "type", and queues the valid events even when others are rejected. An error
// means the body as a whole was unusable (a *ValidationError), or nothing was queued
// (ErrQueueFull, ErrClosed).
func (c *Client) SubmitBatch(body []byte) (*BatchResult, error) {
	if err := c.borrow(); err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	var e C.go_ingest_error
	var batch *C.ingest_batch
	bytes, n := bytesArg(body)
	if status := C.go_ingest_submit_batch(c.ptr, bytes, n, &batch, &e); status != C.INGEST_OK {
		return nil, takeError(status, &e)
	}
	defer C.ingest_batch_free(batch)
	result := &BatchResult{}
	if accepted := int(C.ingest_batch_accepted(batch)); accepted > 0 {
		ids := unsafe.Slice(C.ingest_batch_event_ids(batch), accepted)
		result.IDs = make([]EventID, accepted)
		for i, id := range ids {
			result.IDs[i] = eventID(id)
		}
	}
	result.Receipt = newReceipt(c.client, C.ingest_batch_receipt(batch), result.IDs)
	for i := range int(C.ingest_batch_rejected(batch)) {
		var r C.go_ingest_error
		C.go_ingest_rejection_copy(batch, C.size_t(i), &r)
		result.Rejections = append(result.Rejections, rejection(&r))
		freeError(&r)
	}
	return result, nil
}

// Flush waits until every event submitted before the call is delivered to Kafka (or
// failed), or ctx ends.
func (c *Client) Flush(ctx context.Context) error {
	if err := c.borrow(); err != nil {
		return err
	}
	done, tag, err := c.queue.register()
	if err == nil {
		var e C.go_ingest_error
		if status := C.go_ingest_watch_flush(c.queue.ptr, c.ptr, timeoutMs(ctx), C.uint64_t(tag), &e); status != C.INGEST_OK {
			c.queue.forget(tag)
			err = takeError(status, &e)
		}
	}
	c.mu.RUnlock()
	if err != nil {
		return err
	}
	select {
	case status := <-done:
		if status == C.INGEST_ERR_TIMEOUT {
			return deadlineError(ctx, "the flush did not complete in time")
		}
		return statusError(status, "the flush did not complete")
	case <-ctx.Done():
		c.queue.forget(tag)
		return ctx.Err()
	case <-c.closed:
		return &Error{Status: StatusShuttingDown, Message: "the client was closed during the flush"}
	}
}

// Close stops taking events, delivers what the client holds within
// DefaultCloseTimeout and releases it. What Kafka has not acknowledged by then stays
// in the disk buffer, if there is one, for the next start. Closing twice is
// ErrClosed.
func (c *Client) Close() error {
	_, err := c.Shutdown(context.Background())
	return err
}

// Shutdown is Close with ctx's deadline (DefaultCloseTimeout without one), returning
// what closing achieved. An error with the report: some records were neither
// delivered nor kept (report.Lost), or the client was closed already.
func (c *Client) Shutdown(ctx context.Context) (ShutdownReport, error) {
	timeout := DefaultCloseTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(deadline), 0)
	}
	return c.close(timeout)
}

func (c *client) close(timeout time.Duration) (ShutdownReport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return c.report, &Error{Status: StatusShuttingDown, Message: "the client is closed already"}
	}
	var e C.go_ingest_error
	var report C.ingest_shutdown_report
	status := C.go_ingest_close(c.ptr, C.uint64_t(timeout.Milliseconds()), &report, &e)
	var err error
	if status != C.INGEST_OK {
		err = takeError(status, &e)
	}
	c.report = ShutdownReport{
		Undelivered:  uint64(report.undelivered),
		KeptInBuffer: uint64(report.kept_in_buffer),
		Lost:         uint64(report.lost),
		Elapsed:      time.Duration(report.elapsed_ms) * time.Millisecond,
	}
	c.queue.stop()
	C.ingest_client_free(c.ptr)
	c.ptr = nil
	close(c.closed)
	return c.report, err
}

// Health is a readiness snapshot.
func (c *Client) Health() (Health, error) {
	if err := c.borrow(); err != nil {
		return Health{}, err
	}
	defer c.mu.RUnlock()
	var e C.go_ingest_error
	var h C.ingest_health
	if status := C.go_ingest_health(c.ptr, &h, &e); status != C.INGEST_OK {
		return Health{}, takeError(status, &e)
	}
	return Health{
		Ready:          h.ready != 0,
		KafkaReachable: h.kafka_reachable != 0,
		ShuttingDown:   h.shutting_down != 0,
		HasBuffer:      h.has_buffer != 0,
		Breaker:        Breaker(h.breaker),
		DeadThreads:    uint32(h.dead_threads),
		QueueEvents:    uint64(h.queue_events),
		QueueBytes:     uint64(h.queue_bytes),
		BufferEntries:  uint64(h.buffer_entries),
		BufferBytes:    uint64(h.buffer_bytes),
		BufferMaxBytes: uint64(h.buffer_max_bytes),
	}, nil
}

// Stats are the running totals, for hosts that export their own metrics.
func (c *Client) Stats() (Stats, error) {
	if err := c.borrow(); err != nil {
		return Stats{}, err
	}
	defer c.mu.RUnlock()
	var e C.go_ingest_error
	var s C.ingest_stats
	if status := C.go_ingest_stats(c.ptr, &s, &e); status != C.INGEST_OK {
		return Stats{}, takeError(status, &e)
	}
	return Stats{
		Accepted:           uint64(s.accepted),
		Rejected:           uint64(s.rejected),
		Delivered:          uint64(s.delivered),
		Failed:             uint64(s.failed),
		DeadLettersDropped: uint64(s.dead_letters_dropped),
		QueueEvents:        uint64(s.queue_events),
		QueueBytes:         uint64(s.queue_bytes),
	}, nil
}

// Version is the linked library's version ("0.1.0").
func Version() string { return C.GoString(C.ingest_version()) }

// timeoutMs is ctx's remaining time in milliseconds, or no limit.
func timeoutMs(ctx context.Context) C.uint64_t {
	deadline, ok := ctx.Deadline()
	if !ok {
		return C.uint64_t(math.MaxUint64)
	}
	return C.uint64_t(max(time.Until(deadline).Milliseconds(), 0))
}
