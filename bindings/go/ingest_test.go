package ingest_test

// Tests against a real Kafka (KAFKA_BOOTSTRAP, read back with kcat). scripts/test-bindings
// starts them; by hand:
//
//	KAFKA_STATE_DIR=/tmp/kafka-dev scripts/kafka start    # prints the address
//	bindings/go/build-lib.sh --debug
//	cd bindings/go && KAFKA_BOOTSTRAP=127.0.0.1:19092 go test ./...

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"shopstream/ingest"
)

const childEnv = "INGEST_GO_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	if os.Getenv("KAFKA_BOOTSTRAP") == "" {
		fmt.Fprintln(os.Stderr, "These tests need Kafka: start one (KAFKA_STATE_DIR=/tmp/kafka-dev scripts/kafka start) and export KAFKA_BOOTSTRAP=<the address it prints>, or run scripts/test-bindings.")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func brokers(t *testing.T) string {
	t.Helper()
	b := os.Getenv("KAFKA_BOOTSTRAP")
	if b == "" {
		t.Fatal("KAFKA_BOOTSTRAP is not set: start a Kafka (KAFKA_STATE_DIR=/tmp/kafka-dev scripts/kafka start) and export KAFKA_BOOTSTRAP=<the address it prints>, or run scripts/test-bindings")
	}
	return b
}

var topicNames = map[string]string{
	"product_view": "product-views",
	"cart":         "cart-events",
	"purchase":     "purchases",
	"search":       "search-events",
	"dead_letter":  "events-dlq",
}

// config is a client of this test's own topics (prefix-product-views, ...).
func config(brokers, prefix, bufferDir string) ingest.Config {
	options := map[string]any{"kafka.linger_ms": 2}
	for key, name := range topicNames {
		options["topics."+key+".name"] = prefix + "-" + name
	}
	return ingest.Config{Brokers: brokers, BufferDir: bufferDir, Source: "go-test", Options: options}
}

func unique(name string) string {
	return fmt.Sprintf("go-%s-%d-%d", name, os.Getpid(), time.Now().UnixNano())
}

func newClient(t *testing.T, cfg ingest.Config) *ingest.Client {
	t.Helper()
	c, err := ingest.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// record is one Kafka record as kcat -J prints it.
type record struct {
	Key     string   `json:"key"`
	Payload string   `json:"payload"`
	Headers []string `json:"headers"`
}

func (r record) header(name string) string {
	for i := 0; i+1 < len(r.Headers); i += 2 {
		if r.Headers[i] == name {
			return r.Headers[i+1]
		}
	}
	return ""
}

// consume reads topic from the beginning until it holds want records (or 60 s pass).
func consume(t *testing.T, brokers, topic string, want int) []record {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is missing (apt-get install kcat); scripts/test-bindings installs it")
	}
	deadline := time.Now().Add(60 * time.Second)
	var records []record
	for {
		out, _ := exec.Command("kcat", "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-J").Output()
		records = records[:0]
		for _, line := range bytes.Split(out, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var r record
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("kcat printed %q: %v", line, err)
			}
			records = append(records, r)
		}
		if len(records) >= want || time.Now().After(deadline) {
			return records
		}
		time.Sleep(500 * time.Millisecond)
	}
}

var events = map[ingest.Kind]string{
	ingest.ProductView: `{"user_id":"%s","product_id":"sku-1","price":19.99,"currency":"EUR"}`,
	ingest.Cart:        `{"user_id":"%s","product_id":"sku-1","action":"add","quantity":2,"price":19.99,"currency":"EUR"}`,
	ingest.Purchase:    `{"user_id":"%s","order_id":"o-1","items":[{"product_id":"sku-1","quantity":2,"price":19.99}],"total":39.98,"currency":"EUR"}`,
	ingest.Search:      `{"user_id":"%s","query":"red shoes","results_count":12}`,
}

func TestEachTypeReachesKafkaByteForByteWithKeyAndHeaders(t *testing.T) {
	b := brokers(t)
	prefix := unique("types")
	c := newClient(t, config(b, prefix, t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sent := map[ingest.Kind]struct {
		id      ingest.EventID
		payload string
		user    string
	}{}
	for kind, shape := range events {
		user := "u-" + kind.String()
		payload := fmt.Sprintf(shape, user)
		receipt, err := c.Submit(kind, []byte(payload))
		if err != nil {
			t.Fatalf("Submit(%s): %v", kind, err)
		}
		if err := receipt.Wait(ctx, ingest.Persisted); err != nil {
			t.Fatalf("Wait(persisted) for %s: %v", kind, err)
		}
		if err := receipt.Wait(ctx, ingest.Delivered); err != nil {
			t.Fatalf("Wait(delivered) for %s: %v", kind, err)
		}
		sent[kind] = struct {
			id      ingest.EventID
			payload string
			user    string
		}{receipt.ID(), payload, user}
	}
	for kind, want := range sent {
		records := consume(t, b, prefix+"-"+topicNames[kind.String()], 1)
		if len(records) != 1 {
			t.Fatalf("%s: %d records in the topic, want 1", kind, len(records))
		}
		r := records[0]
		if r.Payload != want.payload {
			t.Errorf("%s: payload %q, sent %q", kind, r.Payload, want.payload)
		}
		if r.Key != want.user {
			t.Errorf("%s: key %q, want the user id %q", kind, r.Key, want.user)
		}
		checks := map[string]string{
			"event_type": kind.String(),
			"event_id":   want.id.String(),
			"schema":     "json:" + kind.String() + "/v1",
			"source":     "go-test",
		}
		for name, value := range checks {
			if got := r.header(name); got != value {
				t.Errorf("%s: header %s = %q, want %q", kind, name, got, value)
			}
		}
		if r.header("received_at") == "" {
			t.Errorf("%s: no received_at header", kind)
		}
	}
}

func TestBatchQueuesTheValidEventsAndReportsEachRejection(t *testing.T) {
	b := brokers(t)
	prefix := unique("batch")
	c := newClient(t, config(b, prefix, ""))
	body := strings.Join([]string{
		`{"type":"product_view","user_id":"u-1","product_id":"sku-1"}`,
		`{"type":"product_view","product_id":"sku-2"}`,
		`{"type":"search","user_id":"u-2","query":"boots"}`,
		`{"type":"product_view","user_id":"u-3","product_id":"sku-3"}`,
	}, "\n")
	result, err := c.SubmitBatch([]byte(body))
	if err != nil {
		t.Fatalf("SubmitBatch: %v", err)
	}
	if len(result.IDs) != 3 || len(result.Rejections) != 1 {
		t.Fatalf("%d accepted, %d rejected; want 3 and 1", len(result.IDs), len(result.Rejections))
	}
	r := result.Rejections[0]
	if r.Index != 1 || r.CodeName != "missing_field" || r.Field != "user_id" || r.Message == "" || r.Code == 0 {
		t.Fatalf("rejection %+v: want index 1, missing_field at user_id with a message", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := result.Receipt.Wait(ctx, ingest.Delivered); err != nil {
		t.Fatalf("Wait(delivered): %v", err)
	}
	views := consume(t, b, prefix+"-product-views", 2)
	ids := map[string]bool{}
	for _, v := range views {
		ids[v.header("event_id")] = true
	}
	for _, i := range []int{0, 2} {
		if !ids[result.IDs[i].String()] {
			t.Errorf("accepted event %d (%s) is not in the topic", i, result.IDs[i])
		}
	}
	if len(views) != 2 {
		t.Errorf("%d product views in the topic, want 2", len(views))
	}
}

// unreachable is a client of no broker, closed at the test's end without waiting for
// what it cannot deliver (rejected events' dead letters included).
func unreachable(t *testing.T) *ingest.Client {
	t.Helper()
	c, err := ingest.New(ingest.Config{Brokers: "127.0.0.1:1"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, _ = c.Shutdown(ctx)
	})
	return c
}

func TestValidationErrorsCarryCodeFieldAndMessage(t *testing.T) {
	c := unreachable(t)
	cases := []struct {
		payload  []byte
		codeName string
		field    string
	}{
		{[]byte(`{"product_id":"sku-1"}`), "missing_field", "user_id"},
		{[]byte(`{"user_id":"u","product_id":"sku-1","price":"cheap"}`), "invalid_type", "price"},
		{[]byte(`not json`), "invalid_json", ""},
		{nil, "empty_body", ""},
		{bytes.Repeat([]byte("x"), 64<<20), "event_too_large", ""},
	}
	for _, tc := range cases {
		_, err := c.Submit(ingest.ProductView, tc.payload)
		var v *ingest.ValidationError
		if !errors.As(err, &v) {
			t.Fatalf("payload %.40q: %v, want a *ValidationError", tc.payload, err)
		}
		if v.CodeName != tc.codeName || v.Field != tc.field || v.Message == "" || v.Code == 0 {
			t.Errorf("payload %.40q: %+v, want %s at %q", tc.payload, v, tc.codeName, tc.field)
		}
		if !errors.Is(err, ingest.ErrInvalidEvent) {
			t.Errorf("errors.Is(%v, ErrInvalidEvent) is false", err)
		}
	}
	stats, err := c.Stats()
	if err != nil || stats.Rejected != uint64(len(cases)) {
		t.Errorf("Stats: %+v, %v; want %d rejected", stats, err, len(cases))
	}
}

func TestConfigurationErrorsNameTheKey(t *testing.T) {
	_, err := ingest.New(ingest.Config{Brokers: "127.0.0.1:1", Options: map[string]any{"kafka.linger_ms": "soon"}})
	if !errors.Is(err, ingest.ErrConfig) || !strings.Contains(err.Error(), "linger_ms") {
		t.Errorf("a text linger: %v; want ErrConfig naming linger_ms", err)
	}
	_, err = ingest.New(ingest.Config{Brokers: "127.0.0.1:1", Options: map[string]any{"kafka.lingerms": 5}})
	if !errors.Is(err, ingest.ErrConfig) || !strings.Contains(err.Error(), "lingerms") {
		t.Errorf("an unknown key: %v; want ErrConfig naming lingerms", err)
	}
	_, err = ingest.NewFromTOML("[kafka\nbrokers = 1")
	if !errors.Is(err, ingest.ErrConfig) {
		t.Errorf("broken TOML: %v; want ErrConfig", err)
	}
	c, err := ingest.NewFromTOML("[kafka]\nbrokers = \"127.0.0.1:1\"\n")
	if err != nil {
		t.Fatalf("NewFromTOML: %v", err)
	}
	if err := c.Close(); err != nil && !errors.Is(err, ingest.ErrDelivery) {
		t.Errorf("Close of an idle client: %v", err)
	}
}

func TestMisuseGivesClearErrors(t *testing.T) {
	c := unreachable(t)
	if _, err := c.Submit(ingest.Kind(99), []byte(`{}`)); !errors.Is(err, ingest.ErrInvalidArgument) {
		t.Errorf("unknown kind: %v; want ErrInvalidArgument", err)
	}
	if _, err := ingest.ParseKind("click"); !errors.Is(err, ingest.ErrInvalidArgument) {
		t.Errorf("ParseKind(click): %v", err)
	}
	receipt, err := c.Submit(ingest.ProductView, []byte(`{"user_id":"u","product_id":"p"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := receipt.Wait(context.Background(), ingest.Ack(7)); !errors.Is(err, ingest.ErrInvalidArgument) {
		t.Errorf("unknown ack: %v; want ErrInvalidArgument", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := receipt.Wait(ctx, ingest.Delivered); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with no broker: %v; want the context's deadline", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := c.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Flush with a cancelled context: %v", err)
	}
	// A waiter still waiting when the client closes gets the outcome, not a hang.
	waited := make(chan error, 1)
	go func() { waited <- receipt.Wait(context.Background(), ingest.Delivered) }()
	time.Sleep(100 * time.Millisecond)
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer closeCancel()
	report, err := c.Shutdown(closeCtx)
	if report.Undelivered == 0 {
		t.Errorf("report %+v (%v): the event could not be delivered", report, err)
	}
	select {
	case err := <-waited:
		if err == nil {
			t.Error("a wait for an event never delivered succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiter hung after Close")
	}
	if err := c.Close(); !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("second Close: %v; want ErrClosed", err)
	}
	if _, err := c.Submit(ingest.ProductView, []byte(`{"user_id":"u","product_id":"p"}`)); !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("Submit after Close: %v; want ErrClosed", err)
	}
	if _, err := c.SubmitBatch([]byte(`{"type":"search","user_id":"u","query":"q"}`)); !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("SubmitBatch after Close: %v", err)
	}
	if err := c.Flush(context.Background()); !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
	if _, err := c.Health(); !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("Health after Close: %v", err)
	}
	if err := receipt.Wait(context.Background(), ingest.Delivered); err == nil {
		t.Error("Wait after Close succeeded for an undelivered event")
	}
}

func TestManyGoroutinesSubmitAtOnce(t *testing.T) {
	b := brokers(t)
	prefix := unique("concurrent")
	c := newClient(t, config(b, prefix, ""))
	const goroutines, each = 16, 250
	var wg sync.WaitGroup
	var failures atomic.Int64
	receipts := make(chan *ingest.Receipt, goroutines*each)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				payload := fmt.Sprintf(`{"user_id":"u-%d","product_id":"sku-%d"}`, g, i)
				r, err := c.Submit(ingest.ProductView, []byte(payload))
				if err != nil {
					failures.Add(1)
					continue
				}
				receipts <- r
			}
		}()
	}
	// Close from another goroutine is not part of this test: all submits finish first.
	wg.Wait()
	close(receipts)
	if failures.Load() != 0 {
		t.Fatalf("%d submissions failed", failures.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var waits sync.WaitGroup
	for r := range receipts {
		waits.Add(1)
		go func() {
			defer waits.Done()
			if err := r.Wait(ctx, ingest.Delivered); err != nil {
				failures.Add(1)
			}
		}()
	}
	waits.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d waits failed", failures.Load())
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	stats, err := c.Stats()
	if err != nil || stats.Accepted != goroutines*each || stats.Delivered != goroutines*each {
		t.Fatalf("Stats: %+v, %v; want %d accepted and delivered", stats, err, goroutines*each)
	}
	if got := len(consume(t, b, prefix+"-product-views", goroutines*each)); got != goroutines*each {
		t.Fatalf("%d records in the topic, want %d", got, goroutines*each)
	}
}

func TestSubmitRacingCloseNeverCrashes(t *testing.T) {
	c, err := ingest.New(ingest.Config{Brokers: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var other atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				_, err := c.Submit(ingest.Search, []byte(`{"user_id":"u","query":"q"}`))
				if err != nil && !errors.Is(err, ingest.ErrClosed) && !errors.Is(err, ingest.ErrQueueFull) {
					other.Add(1)
				}
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _ = c.Shutdown(ctx)
	wg.Wait()
	if other.Load() != 0 {
		t.Fatalf("%d submissions failed with something other than ErrClosed or ErrQueueFull", other.Load())
	}
}

// child submits the events its arguments name with only the accepted ack, closes and
// exits: what it was told was accepted must be in Kafka afterwards.
func child() int {
	n, _ := strconv.Atoi(os.Getenv("INGEST_GO_TEST_EVENTS"))
	cfg := config(os.Getenv("KAFKA_BOOTSTRAP"), os.Getenv("INGEST_GO_TEST_PREFIX"), "")
	c, err := ingest.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for i := range n {
		if _, err := c.Submit(ingest.Cart, fmt.Appendf(nil, `{"user_id":"u-%d","product_id":"sku-1","action":"add","quantity":1}`, i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
	}
	report, err := c.Shutdown(context.Background())
	if err != nil || report.Lost != 0 {
		fmt.Fprintln(os.Stderr, report, err)
		return 4
	}
	return 0
}

func TestAProcessThatExitsAfterCloseLosesNothingAccepted(t *testing.T) {
	b := brokers(t)
	prefix := unique("exit")
	const n = 2000
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "INGEST_GO_TEST_EVENTS="+strconv.Itoa(n), "INGEST_GO_TEST_PREFIX="+prefix, "KAFKA_BOOTSTRAP="+b)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if got := len(consume(t, b, prefix+"-cart-events", n)); got != n {
		t.Fatalf("%d of the %d accepted events are in Kafka", got, n)
	}
}

// logCapture is a slog handler that keeps what it is given.
type logCapture struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r)
	h.mu.Unlock()
	return nil
}
func (h *logCapture) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCapture) WithGroup(string) slog.Handler      { return h }

func TestLogsReachTheHostsLogger(t *testing.T) {
	h := &logCapture{}
	if err := ingest.SetLogger(slog.New(h), slog.LevelDebug); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ingest.SetLogger(nil, slog.LevelInfo) }()
	c, err := ingest.New(ingest.Config{Brokers: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _ = c.Shutdown(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.records) == 0 {
		t.Fatal("no log record reached the logger")
	}
	var target string
	h.records[0].Attrs(func(a slog.Attr) bool {
		if a.Key == "target" {
			target = a.Value.String()
		}
		return true
	})
	if !strings.HasPrefix(target, "ingest") && !strings.Contains(target, "rdkafka") {
		t.Errorf("first record %q has target %q", h.records[0].Message, target)
	}
}

func TestEventIDFormatsAsUUID(t *testing.T) {
	id := ingest.EventID{0x01, 0x93, 0x4f, 0x1c, 0x2b, 0x3a, 0x7d, 0x4e, 0x8f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16}
	if got, want := id.String(), "01934f1c-2b3a-7d4e-8f10-111213141516"; got != want {
		t.Fatalf("%s, want %s", got, want)
	}
	if ingest.Version() == "" {
		t.Fatal("no version")
	}
}
