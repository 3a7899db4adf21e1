package idem

import (
	"context"
	"errors"
	"time"

	"github.com/idemkit/idemkit/idem/event"
)

// WithEvents reports what happens to the key to fn, synchronously, on the
// calling goroutine (the heartbeat's for extensions): see event.Event. fn must
// be quick and must not call back into the same Lease. A Lease from Claim
// reports its own writes to the same fn. Without WithEvents nothing is
// reported and nothing is spent on it.
func WithEvents(fn func(context.Context, event.Event)) Option {
	return func(c *config) { c.events = fn }
}

// WithUpdateEvents is WithEvents for Update: completed (Attempt: the writes
// it took), conflict per lost race, unknown unsettled.
func WithUpdateEvents(fn func(context.Context, event.Event)) UpdateOption {
	return func(c *updateConfig) { c.events = fn }
}

// emitting reports whether events are wanted, and when: the time a step
// starts, or the zero time (and no clock read) without WithEvents.
func (c *config) emitting() (time.Time, bool) {
	if c.events == nil {
		return time.Time{}, false
	}
	return c.now(), true
}

// outcome reports the end of a claim: the waits and lost responses met on
// the way, then its outcome. c.cfg.events is set.
func (c *claimer) outcome(ctx context.Context, l *Lease, rec *record, err error) {
	cfg := c.cfg
	now := cfg.now()
	if !c.waited.IsZero() {
		cfg.events(ctx, event.Event{Kind: event.Waited, Op: cfg.op, Key: c.key, Duration: now.Sub(c.waited)})
	}
	if c.lost != nil && !errors.Is(err, ErrUnknownOutcome) {
		cfg.events(ctx, event.Event{Kind: event.UnknownSettled, Op: cfg.op, Key: c.key, Err: c.lost})
	}
	e := event.Event{Op: cfg.op, Key: c.key, Duration: now.Sub(c.start), Err: err}
	ip, busy := errors.AsType[*InProgressError](err)
	switch {
	case l != nil:
		l.since = now
		e.Kind, e.Attempt, e.Until = event.Claimed, l.rec.Attempt, l.rec.LeaseUntil
		if l.takeover {
			e.Kind = event.Takeover
		}
	case rec != nil:
		e.Kind = event.Replayed
	case busy:
		e.Kind, e.Until = event.InProgress, ip.LeaseUntil
	case errors.Is(err, ErrMismatch):
		e.Kind = event.Mismatch
	case errors.Is(err, ErrUnknownOutcome):
		e.Kind = event.UnknownUnsettled
	case errors.Is(err, ErrConflict):
		e.Kind = event.Conflict
	default:
		return // the caller's or the store's error: the call returns it
	}
	cfg.events(ctx, e)
}

// report reports a write of the lease (op, of next, begun at start) that
// ended with err; unknown is the last lost response the write met.
// l.cfg.events is set, and l.mu is not held.
func (l *Lease) report(ctx context.Context, op string, next record, start time.Time, unknown, cause, err error) {
	cfg := l.cfg
	if errors.Is(err, ErrUnknownOutcome) {
		cfg.events(ctx, event.Event{Kind: event.UnknownUnsettled, Op: cfg.op, Key: l.key, Attempt: next.Attempt, Err: err})
		return
	}
	if errors.Is(err, ErrLeaseLost) {
		l.reportLost(ctx, next.Attempt, err)
		return
	}
	if err != nil {
		return
	}
	now := cfg.now()
	if unknown != nil {
		cfg.events(ctx, event.Event{Kind: event.UnknownSettled, Op: cfg.op, Key: l.key, Attempt: next.Attempt, Err: unknown})
	}
	e := event.Event{Op: cfg.op, Key: l.key, Attempt: next.Attempt, Duration: now.Sub(l.since), Err: cause}
	switch op {
	case "extend":
		e.Kind, e.Until, e.Duration = event.Extended, next.LeaseUntil, now.Sub(start)
	case "complete":
		e.Kind = event.Completed
	case "complete-error":
		e.Kind = event.FailedPermanently
		if next.Error.Code == CodeResultNotStored {
			e.Kind = event.ResultNotStored
		}
		if e.Err == nil {
			e.Err = &PermanentError{Code: next.Error.Code, Err: errors.New(next.Error.Message)}
		}
	case "release":
		e.Kind = event.Released
	}
	cfg.events(ctx, e)
}

// reportLost reports the lease lost, once. l.cfg.events is set.
func (l *Lease) reportLost(ctx context.Context, attempt int, err error) {
	if l.lostSaid.Swap(true) {
		return
	}
	l.cfg.events(ctx, event.Event{Kind: event.LeaseLost, Op: l.cfg.op, Key: l.key, Attempt: attempt,
		Duration: l.cfg.now().Sub(l.since), Err: err})
}
