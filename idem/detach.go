package idem

import (
	"context"
	"sync"
	"time"
)

// writeTimeout bounds each write that Claim and Lease make detached from
// the caller's context, and the writes Do makes after fn returns: a caller
// that gives up mid-write must not leave its key blocked.
const writeTimeout = 10 * time.Second

// detach returns a context for a write that must finish even when ctx
// ends: it keeps ctx's values, not its cancellation, and is bounded by
// writeTimeout. Call end once the write is over.
//
// It is context.WithTimeout(context.WithoutCancel(ctx), writeTimeout),
// made lazily: the timer and the channel behind Done exist only once the
// store asks for Done (a network client does; memstore never does), so a
// write that never waits on its context costs one allocation, not five.
// A ctx that can never be cancelled (Done is nil) needs no WithoutCancel.
func detach(ctx context.Context) *writeCtx {
	values := ctx
	if ctx.Done() != nil {
		values = context.WithoutCancel(ctx)
	}
	return &writeCtx{values: values, deadline: time.Now().Add(writeTimeout)}
}

// writeCtx is detach's context. Its values come from a context that is
// never cancelled, so context.Cause finds no cancellation of the caller's
// through them and falls back to Err, as for the context it stands for.
type writeCtx struct {
	values   context.Context // the caller's values, never cancelled
	deadline time.Time

	mu     sync.Mutex
	err    error           // set by end while timed is not made
	timed  context.Context // made on demand: values with the deadline
	cancel context.CancelFunc
}

func (w *writeCtx) Deadline() (time.Time, bool) { return w.deadline, true }

func (w *writeCtx) Value(key any) any { return w.values.Value(key) }

func (w *writeCtx) Done() <-chan struct{} { return w.made().Done() }

// Err is what the timed context would say: until it is made, end and the
// clock tell, and the timed context is made to agree with what they said
// (an error, once given, never changes).
func (w *writeCtx) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.timed != nil:
		return w.timed.Err()
	case w.err != nil:
		return w.err
	case time.Until(w.deadline) <= 0: // the monotonic clock only: cheaper than time.Now
		return context.DeadlineExceeded
	}
	return nil
}

// AfterFunc lets a context derived from w (context.WithCancel(w), as
// net/http does with each request's) follow w's cancellation without a
// goroutine of its own: the context package uses this method of a parent
// it did not make.
func (w *writeCtx) AfterFunc(f func()) (stop func() bool) {
	return context.AfterFunc(w.made(), f)
}

// made returns the timed context, making it on first use.
func (w *writeCtx) made() context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.timed != nil:
	case w.err == context.Canceled:
		w.timed, w.cancel = context.WithCancel(w.values)
		w.cancel()
	default: // an expired deadline makes it expired already
		w.timed, w.cancel = context.WithDeadline(w.values, w.deadline)
	}
	return w.timed
}

// end cancels w, as the CancelFunc of context.WithTimeout: the write is
// over, and whatever still waits on w stops.
func (w *writeCtx) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.timed != nil:
		w.cancel()
	case w.err != nil:
	case time.Until(w.deadline) > 0:
		w.err = context.Canceled
	default:
		w.err = context.DeadlineExceeded
	}
}
