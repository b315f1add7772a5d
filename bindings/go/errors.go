package ingest

import (
	"errors"
	"fmt"
)

// Status is the library's outcome code (the C ABI's ingest_status). The values are
// fixed: new ones may be added, none changes.
type Status int

// The statuses an Error carries.
const (
	StatusOK              Status = 0
	StatusInvalidEvent    Status = 1
	StatusQueueFull       Status = 2
	StatusShuttingDown    Status = 3
	StatusConfig          Status = 4
	StatusKafka           Status = 5
	StatusDelivery        Status = 6
	StatusIO              Status = 7
	StatusBuffer          Status = 8
	StatusTimeout         Status = 9
	StatusPending         Status = 64
	StatusInvalidArgument Status = 100
	StatusPanic           Status = 101
	StatusUnknown         Status = 199
)

var statusNames = map[Status]string{
	StatusOK:              "ok",
	StatusInvalidEvent:    "invalid_event",
	StatusQueueFull:       "queue_full",
	StatusShuttingDown:    "shutting_down",
	StatusConfig:          "config",
	StatusKafka:           "kafka",
	StatusDelivery:        "delivery",
	StatusIO:              "io",
	StatusBuffer:          "buffer",
	StatusTimeout:         "timeout",
	StatusPending:         "pending",
	StatusInvalidArgument: "invalid_argument",
	StatusPanic:           "panic",
	StatusUnknown:         "unknown",
}

// String is the status's snake_case name ("queue_full").
func (s Status) String() string {
	if name, ok := statusNames[s]; ok {
		return name
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// Error is a failed call: its status and the library's message. Compare with the
// sentinels below through errors.Is (errors.Is(err, ingest.ErrQueueFull)), or take
// it with errors.As to read the status.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "ingest: " + e.Status.String()
	}
	return "ingest: " + e.Status.String() + ": " + e.Message
}

// Is matches a sentinel of the same status (a sentinel has no message).
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Message == "" && t.Status == e.Status
}

// Timeout reports whether the call ended at its deadline (as net.Error does).
func (e *Error) Timeout() bool { return e.Status == StatusTimeout }

// Sentinels for errors.Is.
var (
	// ErrQueueFull is back-pressure: the in-memory queue is at its bound; retry later.
	ErrQueueFull = &Error{Status: StatusQueueFull}
	// ErrClosed: the client is closed or closing and takes no more events.
	ErrClosed = &Error{Status: StatusShuttingDown}
	// ErrConfig: the configuration is invalid (the message names the key).
	ErrConfig = &Error{Status: StatusConfig}
	// ErrDelivery: some events did not reach the acknowledgement level asked for.
	ErrDelivery = &Error{Status: StatusDelivery}
	// ErrTimeout: a wait ended at its deadline; the events may still get there.
	ErrTimeout = &Error{Status: StatusTimeout}
	// ErrBuffer: the disk buffer could not be opened or used.
	ErrBuffer = &Error{Status: StatusBuffer}
	// ErrInvalidArgument: an argument the library cannot take (unknown kind or ack).
	ErrInvalidArgument = &Error{Status: StatusInvalidArgument}
)

// ValidationError is an event the validator refused: its position in its batch (0
// for a single submission), the code's fixed number and name (see the table in
// ingest-core's codes documentation), the field at fault ("" for whole-document
// problems) and a message.
type ValidationError struct {
	Index    int
	Code     int
	CodeName string
	Field    string
	Message  string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("ingest: invalid event: %s: %s", e.CodeName, e.Message)
	}
	return fmt.Sprintf("ingest: invalid event: %s at %s: %s", e.CodeName, e.Field, e.Message)
}

// Is makes every ValidationError match ErrInvalidEvent.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidEvent }

// ErrInvalidEvent matches every *ValidationError through errors.Is.
var ErrInvalidEvent = errors.New("ingest: invalid event")
