package idem

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// EventKind says what happened to a key. See Event.
type EventKind uint8

// The kinds of Event, in the order a call meets them. Each call reports
// one outcome of its claim (claimed, takeover, replayed, in progress,
// mismatch), preceded by waited and unknown settled when they happened,
// then, for the owner, the lease's news (extended, lease lost) and its end
// (completed, failed permanently, result not stored, released).
const (
	// EventClaimed: the caller owns the key, a fresh claim (or a claim of
	// a released key). Attempt and Until are the claim's, Duration is how
	// long the claim took.
	EventClaimed EventKind = iota + 1
	// EventTakeover: the caller took the key over from an owner whose
	// lease had passed, in place of EventClaimed. Attempt is the new
	// claim's (2 for the first takeover).
	EventTakeover
	// EventReplayed: the key was completed before; its stored answer (a
	// result or a permanent error) is returned without running anything.
	// Counter.Add: the operation was applied before.
	EventReplayed
	// EventInProgress: another owner holds the key; Until is its lease
	// deadline. The call returns *InProgressError.
	EventInProgress
	// EventWaited: the call waited (WithWait) for another owner's call;
	// Duration is how long. Its outcome event follows.
	EventWaited
	// EventMismatch: the key was used with a different fingerprint. The
	// call returns ErrMismatch.
	EventMismatch
	// EventExtended: the lease was extended (Lease.Extend, the heartbeat);
	// Until is the new deadline, Duration the write's.
	EventExtended
	// EventLeaseLost: the owner lost the key (taken over, moved on, or not
	// extended before it passed); reported once per lease. Err says how.
	EventLeaseLost
	// EventCompleted: the answer was stored (Lease.Complete, the end of Do
	// and Once); Duration is how long the key was held, fn's run included.
	// Update and Counter.Add: the write applied; Attempt is how many
	// writes it took.
	EventCompleted
	// EventFailedPermanently: a permanent error was stored as the answer
	// (Permanent, Lease.CompleteError). Err is it.
	EventFailedPermanently
	// EventResultNotStored: fn succeeded but its result could not be
	// stored (too large for the store, or not encodable), so a permanent
	// CodeResultNotStored error was stored in its place. Err says why.
	EventResultNotStored
	// EventReleased: the claim was given up so a retry runs again (fn
	// failed, panicked, or the caller gave up mid-claim). Err is the cause
	// when Do knows it.
	EventReleased
	// EventUnknownSettled: a write's response was lost (ErrUnknownOutcome)
	// and the call found out what became of it. Err is the lost response.
	// The write's own event follows.
	EventUnknownSettled
	// EventUnknownUnsettled: a write's outcome could not be told, and the
	// call returns an error matching ErrUnknownOutcome.
	EventUnknownUnsettled
	// EventConflict: a write lost a race to another writer (Update and
	// Counter.Add, then retried; a claim that gave up). Attempt is the
	// write's.
	EventConflict
	// EventUnscoped: an adapter (idemhttp) names no caller for a request,
	// so its key is shared by every caller that names none (by default,
	// every request without an Authorization header). Reported before the
	// claim; idemhttp.WithScopeRequired refuses such requests instead.
	EventUnscoped
)

var eventNames = [...]string{
	EventClaimed:           "claimed",
	EventTakeover:          "takeover",
	EventReplayed:          "replayed",
	EventInProgress:        "in_progress",
	EventWaited:            "waited",
	EventMismatch:          "mismatch",
	EventExtended:          "extended",
	EventLeaseLost:         "lease_lost",
	EventCompleted:         "completed",
	EventFailedPermanently: "failed_permanently",
	EventResultNotStored:   "result_not_stored",
	EventReleased:          "released",
	EventUnknownSettled:    "unknown_settled",
	EventUnknownUnsettled:  "unknown_unsettled",
	EventConflict:          "conflict",
	EventUnscoped:          "unscoped",
}

// String returns the kind's name in snake case ("lease_lost"), as metrics
// and logs show it.
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "unknown"
}

// An Event is something that happened to a key, reported to the function
// given with WithEvents (WithUpdateEvents, Counter.Events). Fields that do
// not apply to a kind are zero.
type Event struct {
	Kind EventKind
	// Op is the entry point: "Do", "Once", "Claim", "Update", "Add", or an
	// adapter's ("saga.Run", "idemhttp", "idemlambda.SQS", ...).
	Op string
	// Key is the full key, prefix and scope included. It may be personal
	// data: an adapter decides what to export (idemotel never exports it).
	Key string
	// Attempt is the claim's attempt (1, plus one per takeover), or the
	// write's attempt for Update and Counter.Add.
	Attempt int
	// Until is a lease deadline: the caller's (claimed, takeover,
	// extended) or the other owner's (in progress).
	Until time.Time
	// Duration is how long the step took: the claim, the wait, the hold of
	// the key up to its end, an extension's write.
	Duration time.Duration
	Err      error
}

// WithEvents reports what happens to the key to fn, synchronously, on the
// calling goroutine (the heartbeat's for extensions): see Event. fn must
// be quick and must not call back into the same Lease. A Lease from Claim
// reports its own writes to the same fn. Without WithEvents nothing is
// reported and nothing is spent on it.
func WithEvents(fn func(context.Context, Event)) Option {
	return func(c *config) { c.events = fn }
}

// WithUpdateEvents is WithEvents for Update: completed (Attempt: the writes
// it took), conflict per lost race, unknown unsettled.
func WithUpdateEvents(fn func(context.Context, Event)) UpdateOption {
	return func(c *updateConfig) { c.events = fn }
}

// LogEvents returns an events function (WithEvents) that writes one line
// per event to l, the key included, at a level by severity: Debug for the
// routine (claimed, replayed, extended, completed), Info for what an
// operator may want to know (takeover, waited, in progress, released,
// failed permanently, unknown settled, conflict), Warn for what needs a
// look (mismatch, lease lost, unknown unsettled, result not stored,
// unscoped).
func LogEvents(l *slog.Logger) func(context.Context, Event) {
	return func(ctx context.Context, e Event) {
		level := eventLevel(e.Kind)
		if !l.Enabled(ctx, level) {
			return
		}
		attrs := make([]slog.Attr, 0, 6)
		attrs = append(attrs, slog.String("op", e.Op), slog.String("key", e.Key))
		if e.Attempt > 0 {
			attrs = append(attrs, slog.Int("attempt", e.Attempt))
		}
		if !e.Until.IsZero() {
			attrs = append(attrs, slog.Time("until", e.Until))
		}
		attrs = append(attrs, slog.Duration("duration", e.Duration))
		if e.Err != nil {
			attrs = append(attrs, slog.String("err", e.Err.Error()))
		}
		l.LogAttrs(ctx, level, "idem: "+e.Kind.String(), attrs...)
	}
}

func eventLevel(k EventKind) slog.Level {
	switch k {
	case EventClaimed, EventReplayed, EventExtended, EventCompleted:
		return slog.LevelDebug
	case EventMismatch, EventLeaseLost, EventUnknownUnsettled, EventResultNotStored, EventUnscoped:
		return slog.LevelWarn
	}
	return slog.LevelInfo
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
		cfg.events(ctx, Event{Kind: EventWaited, Op: cfg.op, Key: c.key, Duration: now.Sub(c.waited)})
	}
	if c.lost != nil && !errors.Is(err, ErrUnknownOutcome) {
		cfg.events(ctx, Event{Kind: EventUnknownSettled, Op: cfg.op, Key: c.key, Err: c.lost})
	}
	e := Event{Op: cfg.op, Key: c.key, Duration: now.Sub(c.start), Err: err}
	ip, busy := errors.AsType[*InProgressError](err)
	switch {
	case l != nil:
		l.since = now
		e.Kind, e.Attempt, e.Until = EventClaimed, l.rec.Attempt, l.rec.LeaseUntil
		if l.takeover {
			e.Kind = EventTakeover
		}
	case rec != nil:
		e.Kind = EventReplayed
	case busy:
		e.Kind, e.Until = EventInProgress, ip.LeaseUntil
	case errors.Is(err, ErrMismatch):
		e.Kind = EventMismatch
	case errors.Is(err, ErrUnknownOutcome):
		e.Kind = EventUnknownUnsettled
	case errors.Is(err, ErrConflict):
		e.Kind = EventConflict
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
		cfg.events(ctx, Event{Kind: EventUnknownUnsettled, Op: cfg.op, Key: l.key, Attempt: next.Attempt, Err: err})
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
		cfg.events(ctx, Event{Kind: EventUnknownSettled, Op: cfg.op, Key: l.key, Attempt: next.Attempt, Err: unknown})
	}
	e := Event{Op: cfg.op, Key: l.key, Attempt: next.Attempt, Duration: now.Sub(l.since), Err: cause}
	switch op {
	case "extend":
		e.Kind, e.Until, e.Duration = EventExtended, next.LeaseUntil, now.Sub(start)
	case "complete":
		e.Kind = EventCompleted
	case "complete-error":
		e.Kind = EventFailedPermanently
		if next.Error.Code == CodeResultNotStored {
			e.Kind = EventResultNotStored
		}
		if e.Err == nil {
			e.Err = &PermanentError{Code: next.Error.Code, Err: errors.New(next.Error.Message)}
		}
	case "release":
		e.Kind = EventReleased
	}
	cfg.events(ctx, e)
}

// reportLost reports the lease lost, once. l.cfg.events is set.
func (l *Lease) reportLost(ctx context.Context, attempt int, err error) {
	if l.lostSaid.Swap(true) {
		return
	}
	l.cfg.events(ctx, Event{Kind: EventLeaseLost, Op: l.cfg.op, Key: l.key, Attempt: attempt,
		Duration: l.cfg.now().Sub(l.since), Err: err})
}
