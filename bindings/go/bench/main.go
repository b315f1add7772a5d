// Command bench measures the Go package next to a pure-Go Kafka client (franz-go) in
// the same run: the same events (KEY<TAB>VALUE lines from `produce-bench write-input`),
// the same topic, acks=all with idempotence, lz4, 5 ms linger, and the five headers
// every ingest-core record carries. Each run appends one JSON line to -json.
//
//	go run . -tool ingest -brokers B -topic T -input events.tsv -label L -json results.jsonl
//	go run . -tool franz-go ...
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"shopstream/ingest"
)

type event struct{ key, value []byte }

func main() {
	tool := flag.String("tool", "ingest", "ingest (this package) or franz-go")
	brokers := flag.String("brokers", "127.0.0.1:9092", "bootstrap brokers")
	topic := flag.String("topic", "", "topic to write to")
	input := flag.String("input", "", "KEY<TAB>VALUE lines (produce-bench write-input)")
	label := flag.String("label", "", "name of the run in the results")
	results := flag.String("json", "", "append the result as a JSON line to this file")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	events, err := read(*input)
	if err != nil {
		log.Fatal(err)
	}
	var seconds float64
	var delivered int64
	switch *tool {
	case "ingest":
		seconds, delivered, err = runIngest(*brokers, *topic, events)
	case "franz-go":
		seconds, delivered, err = runFranz(*brokers, *topic, events)
	default:
		err = fmt.Errorf("unknown tool %q", *tool)
	}
	if err != nil {
		log.Fatal(err)
	}
	rate := float64(delivered) / seconds
	fmt.Printf("%s (%s): %d events in %.2f s, %.0f events/s\n", *label, *tool, delivered, seconds, rate)
	if *results != "" {
		line, _ := json.Marshal(map[string]any{
			"label": *label, "tool": *tool, "events": len(events), "delivered": delivered,
			"seconds": seconds, "events_per_s": rate,
		})
		f, err := os.OpenFile(*results, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(append(line, '\n')); err != nil {
			log.Fatal(err)
		}
	}
}

func read(path string) ([]event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var events []event
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		key, value, ok := bytes.Cut(scanner.Bytes(), []byte("\t"))
		if !ok {
			return nil, fmt.Errorf("%s: a line without a tab", path)
		}
		events = append(events, event{bytes.Clone(key), bytes.Clone(value)})
	}
	return events, scanner.Err()
}

// runIngest submits every event through the Go package and flushes: the time until
// Kafka acknowledged them all.
func runIngest(brokers, topic string, events []event) (float64, int64, error) {
	client, err := ingest.New(ingest.Config{
		Brokers: brokers,
		Source:  "go-bench",
		Options: map[string]any{"topics.product_view.name": topic, "dead_letter.enabled": false},
	})
	if err != nil {
		return 0, 0, err
	}
	defer client.Close()
	started := time.Now()
	for _, e := range events {
		for {
			_, err := client.Submit(ingest.ProductView, e.value)
			if err == nil {
				break
			}
			if !errorsIsQueueFull(err) {
				return 0, 0, err
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err := client.Flush(context.Background()); err != nil {
		return 0, 0, err
	}
	seconds := time.Since(started).Seconds()
	stats, err := client.Stats()
	if err != nil {
		return 0, 0, err
	}
	return seconds, int64(stats.Delivered), nil
}

func errorsIsQueueFull(err error) bool {
	e, ok := err.(*ingest.Error)
	return ok && e.Status == ingest.StatusQueueFull
}

// runFranz produces the same keys and values with franz-go, with the producer settings
// ingest-core uses and the same five headers, and flushes.
func runFranz(brokers, topic string, events []event) (float64, int64, error) {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(brokers),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(100_000),
		kgo.RecordDeliveryTimeout(300*time.Second),
	)
	if err != nil {
		return 0, 0, err
	}
	defer client.Close()
	var delivered, failed atomic.Int64
	var firstErr atomic.Value
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
			return
		}
		delivered.Add(1)
	}
	ctx := context.Background()
	started := time.Now()
	for i, e := range events {
		now := time.Now().UTC()
		client.Produce(ctx, &kgo.Record{
			Key:   e.key,
			Value: e.value,
			Headers: []kgo.RecordHeader{
				{Key: "event_type", Value: []byte("product_view")},
				{Key: "event_id", Value: []byte(eventID(i))},
				{Key: "received_at", Value: now.AppendFormat(nil, "2006-01-02T15:04:05.000Z")},
				{Key: "source", Value: []byte("go-bench")},
				{Key: "schema", Value: []byte("json:product_view/v1")},
			},
		}, done)
	}
	if err := client.Flush(ctx); err != nil {
		return 0, 0, err
	}
	seconds := time.Since(started).Seconds()
	if failed.Load() > 0 {
		return 0, 0, fmt.Errorf("franz-go: %d records failed: %v", failed.Load(), firstErr.Load())
	}
	return seconds, delivered.Load(), nil
}

// eventID is a UUID-shaped id, distinct per event, as ingest-core writes one.
func eventID(i int) string {
	s := strconv.FormatInt(int64(i), 16)
	return "00000000-0000-7000-8000-" + fmt.Sprintf("%012s", s)
}
