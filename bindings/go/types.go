package ingest

/*
#include "ingest.h"
*/
import "C"

import (
	"encoding/hex"
	"fmt"
	"time"
)

// Kind is an event type.
type Kind uint32

// The event types.
const (
	ProductView Kind = C.INGEST_PRODUCT_VIEW
	Cart        Kind = C.INGEST_CART
	Purchase    Kind = C.INGEST_PURCHASE
	Search      Kind = C.INGEST_SEARCH
)

var kindNames = [...]string{"product_view", "cart", "purchase", "search"}

// String is the type's name as in the event contract ("product_view").
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// ParseKind reads a type's name ("product_view", "cart", "purchase", "search").
func ParseKind(name string) (Kind, error) {
	for i, n := range kindNames {
		if n == name {
			return Kind(i), nil
		}
	}
	return 0, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("unknown event type %q (product_view, cart, purchase or search)", name)}
}

// Ack is an acknowledgement level.
type Ack uint32

// The acknowledgement levels.
const (
	// Accepted: validated and queued in memory (reached as Submit returns).
	Accepted Ack = C.INGEST_ACK_ACCEPTED
	// Persisted: written to the disk buffer (without one: delivered to Kafka).
	Persisted Ack = C.INGEST_ACK_PERSISTED
	// Delivered: acknowledged by Kafka with acks=all.
	Delivered Ack = C.INGEST_ACK_DELIVERED
)

// String is the level's name ("delivered").
func (a Ack) String() string {
	switch a {
	case Accepted:
		return "accepted"
	case Persisted:
		return "persisted"
	case Delivered:
		return "delivered"
	}
	return fmt.Sprintf("ack(%d)", uint32(a))
}

// EventID is an event's id: a UUID's 16 bytes.
type EventID [16]byte

// String is the UUID's text form (36 characters).
func (id EventID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

func eventID(c C.ingest_event_id) EventID {
	var id EventID
	for i := range id {
		id[i] = byte(c.bytes[i])
	}
	return id
}

// ShutdownReport is what closing achieved.
type ShutdownReport struct {
	// Records Kafka had not acknowledged by the deadline.
	Undelivered uint64
	// Of those, the records kept in the disk buffer for the next start.
	KeptInBuffer uint64
	// Records neither delivered nor kept: lost.
	Lost uint64
	// How long closing took.
	Elapsed time.Duration
}

// Breaker is the circuit breaker's state.
type Breaker uint32

// The breaker's states.
const (
	BreakerClosed   Breaker = 0
	BreakerHalfOpen Breaker = 1
	BreakerOpen     Breaker = 2
)

// Health is a readiness snapshot.
type Health struct {
	// Ready: new events can be taken now (not closing, threads alive, Kafka reachable
	// or the disk buffer has room).
	Ready bool
	// KafkaReachable: the circuit breaker is not open.
	KafkaReachable bool
	// ShuttingDown: closing began.
	ShuttingDown bool
	// HasBuffer: a disk buffer is configured (the Buffer fields are then set).
	HasBuffer bool
	Breaker   Breaker
	// DeadThreads: background threads that died (a restart is needed).
	DeadThreads    uint32
	QueueEvents    uint64
	QueueBytes     uint64
	BufferEntries  uint64
	BufferBytes    uint64
	BufferMaxBytes uint64
}

// Stats are running totals since the client was created.
type Stats struct {
	// Accepted: events validated and queued.
	Accepted uint64
	// Rejected: events that failed validation.
	Rejected uint64
	// Delivered: records acknowledged by Kafka (dead letters included).
	Delivered uint64
	// Failed: records Kafka did not take.
	Failed uint64
	// DeadLettersDropped: dead-letter records not queued.
	DeadLettersDropped uint64
	QueueEvents        uint64
	QueueBytes         uint64
}
