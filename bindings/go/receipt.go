package ingest

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// Receipt tells what became of a submission's events. Safe for concurrent use;
// dropping it does not affect delivery.
type Receipt struct {
	ids    []EventID
	ptr    *C.ingest_receipt
	client *client
}

func newReceipt(c *client, ptr *C.ingest_receipt, ids []EventID) *Receipt {
	r := &Receipt{ids: ids, ptr: ptr, client: c}
	runtime.AddCleanup(r, func(p *C.ingest_receipt) { C.ingest_receipt_free(p) }, ptr)
	return r
}

// ID is the event's id (the first event's, for a batch).
func (r *Receipt) ID() EventID {
	if len(r.ids) == 0 {
		return EventID{}
	}
	return r.ids[0]
}

// IDs are the ids of the events the receipt covers, in submission order.
func (r *Receipt) IDs() []EventID { return r.ids }

// Try reports the outcome without waiting: nil once every event reached ack, an
// error once one failed to, and (false, nil) while they are on their way.
func (r *Receipt) Try(ack Ack) (done bool, err error) {
	var e C.go_ingest_error
	status := C.go_ingest_receipt_try(r.ptr, C.uint32_t(ack), &e)
	runtime.KeepAlive(r)
	switch status {
	case C.INGEST_PENDING:
		return false, nil
	case C.INGEST_OK:
		return true, nil
	default:
		return true, takeError(status, &e)
	}
}

// Wait blocks until the events reach ack (Persisted, Delivered; Accepted returns at
// once), fail to (an *Error with StatusDelivery and why), or ctx ends (ctx.Err()).
// It blocks no thread: the client's completion goroutine wakes it.
func (r *Receipt) Wait(ctx context.Context, ack Ack) error {
	if done, err := r.Try(ack); done || err != nil {
		return err
	}
	c := r.client
	done, tag, err := c.queue.register()
	if err != nil {
		return err
	}
	c.mu.RLock()
	if c.ptr == nil {
		c.mu.RUnlock()
		c.queue.forget(tag)
		return r.settled(ack)
	}
	var e C.go_ingest_error
	status := C.go_ingest_watch(c.queue.ptr, r.ptr, C.uint32_t(ack), timeoutMs(ctx), C.uint64_t(tag), &e)
	c.mu.RUnlock()
	if status != C.INGEST_OK {
		c.queue.forget(tag)
		return takeError(status, &e)
	}
	select {
	case status := <-done:
		if status == C.INGEST_ERR_TIMEOUT {
			return deadlineError(ctx, "the events did not reach "+ack.String()+" in time")
		}
		// The outcome is known: Try gives it with the library's message.
		return r.settled(ack)
	case <-ctx.Done():
		c.queue.forget(tag)
		return ctx.Err()
	case <-c.closed:
		return r.settled(ack)
	}
}

// settled is the outcome of a receipt that should have one (after its completion or
// after the client closed).
func (r *Receipt) settled(ack Ack) error {
	done, err := r.Try(ack)
	if !done {
		return &Error{Status: StatusShuttingDown, Message: "the client closed before the events reached " + ack.String()}
	}
	return err
}

// completions is a client's completion queue and the goroutine that hands its
// finished registrations to the waiting goroutines.
type completions struct {
	ptr     *C.ingest_completions
	mu      sync.Mutex
	waiting map[uint64]chan C.ingest_status
	nextTag uint64
	stopped atomic.Bool
	done    chan struct{}
}

// How many finished registrations one wake-up takes, and how long the goroutine
// sleeps in the library before it checks whether to stop.
const (
	completionBatch  = 256
	completionTickMs = 100
)

func newCompletions() *completions {
	q := &completions{
		ptr:     C.ingest_completions_new(0),
		waiting: map[uint64]chan C.ingest_status{},
		done:    make(chan struct{}),
	}
	go q.run()
	return q
}

func (q *completions) run() {
	defer close(q.done)
	var buf [completionBatch]C.ingest_completion
	for !q.stopped.Load() {
		n := int(C.ingest_completions_wait(q.ptr, &buf[0], completionBatch, completionTickMs))
		q.mu.Lock()
		for _, done := range buf[:n] {
			tag := uint64(done.tag)
			if ch, ok := q.waiting[tag]; ok {
				ch <- done.status
				delete(q.waiting, tag)
			}
		}
		q.mu.Unlock()
	}
}

// register reserves a tag and the channel its completion arrives on.
func (q *completions) register() (<-chan C.ingest_status, uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped.Load() {
		return nil, 0, &Error{Status: StatusShuttingDown, Message: "the client is closed"}
	}
	q.nextTag++
	ch := make(chan C.ingest_status, 1)
	q.waiting[q.nextTag] = ch
	return ch, q.nextTag, nil
}

// forget drops a registration nobody waits for any more.
func (q *completions) forget(tag uint64) {
	q.mu.Lock()
	delete(q.waiting, tag)
	q.mu.Unlock()
}

// stop ends the goroutine and releases the queue; waiters learn of it through the
// client's closed channel.
func (q *completions) stop() {
	q.stopped.Store(true)
	<-q.done
	C.ingest_completions_free(q.ptr)
	q.ptr = nil
}

// statusError is the error of a completion's status (nil for OK).
func statusError(status C.ingest_status, message string) error {
	if status == C.INGEST_OK {
		return nil
	}
	return &Error{Status: Status(status), Message: message}
}

// deadlineError is the error of a wait the library timed out: ctx's own error, as the
// library's timeout is ctx's deadline cut to whole milliseconds (ctx ends at most that
// much later); an ErrTimeout-matching error should ctx have no deadline.
func deadlineError(ctx context.Context, message string) error {
	if _, ok := ctx.Deadline(); ok {
		<-ctx.Done()
		return ctx.Err()
	}
	return &Error{Status: StatusTimeout, Message: message}
}
