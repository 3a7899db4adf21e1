// Package event is what idem reports about a key as it goes: a claim, a
// takeover, a replay, a wait, an extension, a lost lease, a completion, a
// release, a lost response settled or not. Pass a function of Events to
// idem.WithEvents (idem.WithUpdateEvents, idem.Counter.Events) to receive them;
// Log writes them to a slog.Logger, and idem/idemotel turns them into
// OpenTelemetry metrics and spans. Without such a function idem reports
// nothing and spends nothing on it.
package event

import (
	"context"
	"log/slog"
	"time"
)

// Kind says what happened to a key. See Event.
type Kind uint8

// The kinds of Event, in the order a call meets them. Each call reports
// one outcome of its claim (claimed, takeover, replayed, in progress,
// mismatch), preceded by waited and unknown settled when they happened,
// then, for the owner, the lease's news (extended, lease lost) and its end
// (completed, failed permanently, result not stored, released).
const (
	// Claimed: the caller owns the key, a fresh claim (or a claim of
	// a released key). Attempt and Until are the claim's, Duration is how
	// long the claim took.
	Claimed Kind = iota + 1
	// Takeover: the caller took the key over from an owner whose
	// lease had passed, in place of Claimed. Attempt is the new
	// claim's (2 for the first takeover).
	Takeover
	// Replayed: the key was completed before; its stored answer (a
	// result or a permanent error) is returned without running anything.
	// idem.Counter.Add: the operation was applied before.
	Replayed
	// InProgress: another owner holds the key; Until is its lease
	// deadline. The call returns *idem.InProgressError.
	InProgress
	// Waited: the call waited (idem.WithWait) for another owner's call;
	// Duration is how long. Its outcome event follows.
	Waited
	// Mismatch: the key was used with a different fingerprint. The
	// call returns idem.ErrMismatch.
	Mismatch
	// Extended: the lease was extended (idem.Lease.Extend, the heartbeat);
	// Until is the new deadline, Duration the write's.
	Extended
	// LeaseLost: the owner lost the key (taken over, moved on, or not
	// extended before it passed); reported once per lease. Err says how.
	LeaseLost
	// Completed: the answer was stored (idem.Lease.Complete, the end of Do
	// and Once); Duration is how long the key was held, fn's run included.
	// Update and idem.Counter.Add: the write applied; Attempt is how many
	// writes it took.
	Completed
	// FailedPermanently: a permanent error was stored as the answer
	// (idem.Permanent, idem.Lease.CompleteError). Err is it.
	FailedPermanently
	// ResultNotStored: fn succeeded but its result could not be
	// stored (too large for the store, or not encodable), so a permanent
	// idem.CodeResultNotStored error was stored in its place. Err says why.
	ResultNotStored
	// Released: the claim was given up so a retry runs again (fn
	// failed, panicked, or the caller gave up mid-claim). Err is the cause
	// when Do knows it.
	Released
	// UnknownSettled: a write's response was lost (idem.ErrUnknownOutcome)
	// and the call found out what became of it. Err is the lost response.
	// The write's own event follows.
	UnknownSettled
	// UnknownUnsettled: a write's outcome could not be told, and the
	// call returns an error matching idem.ErrUnknownOutcome.
	UnknownUnsettled
	// Conflict: a write lost a race to another writer (Update and
	// idem.Counter.Add, then retried; a claim that gave up). Attempt is the
	// write's.
	Conflict
	// Unscoped: an adapter (idemhttp) names no caller for a request,
	// so its key is shared by every caller that names none (by default,
	// every request without an Authorization header). Reported before the
	// claim; idemhttp.WithScopeRequired refuses such requests instead.
	Unscoped
)

var names = [...]string{
	Claimed:           "claimed",
	Takeover:          "takeover",
	Replayed:          "replayed",
	InProgress:        "in_progress",
	Waited:            "waited",
	Mismatch:          "mismatch",
	Extended:          "extended",
	LeaseLost:         "lease_lost",
	Completed:         "completed",
	FailedPermanently: "failed_permanently",
	ResultNotStored:   "result_not_stored",
	Released:          "released",
	UnknownSettled:    "unknown_settled",
	UnknownUnsettled:  "unknown_unsettled",
	Conflict:          "conflict",
	Unscoped:          "unscoped",
}

// String returns the kind's name in snake case ("lease_lost"), as metrics
// and logs show it.
func (k Kind) String() string {
	if int(k) < len(names) && names[k] != "" {
		return names[k]
	}
	return "unknown"
}

// An Event is something that happened to a key, reported to the function
// given with idem.WithEvents (idem.WithUpdateEvents, idem.Counter.Events). Fields that do
// not apply to a kind are zero.
type Event struct {
	Kind Kind
	// Op is the entry point: "Do", "Once", "Claim", "Update", "Add", or an
	// adapter's ("saga.Run", "idemhttp", "idemlambda.SQS", ...).
	Op string
	// Key is the full key, prefix and scope included. It may be personal
	// data: an adapter decides what to export (idemotel never exports it).
	Key string
	// Attempt is the claim's attempt (1, plus one per takeover), or the
	// write's attempt for Update and idem.Counter.Add.
	Attempt int
	// Until is a lease deadline: the caller's (claimed, takeover,
	// extended) or the other owner's (in progress).
	Until time.Time
	// Duration is how long the step took: the claim, the wait, the hold of
	// the key up to its end, an extension's write.
	Duration time.Duration
	Err      error
}

// Log returns an events function (idem.WithEvents) that writes one line
// per event to l, the key included, at a level by severity: Debug for the
// routine (claimed, replayed, extended, completed), Info for what an
// operator may want to know (takeover, waited, in progress, released,
// failed permanently, unknown settled, conflict), Warn for what needs a
// look (mismatch, lease lost, unknown unsettled, result not stored,
// unscoped).
func Log(l *slog.Logger) func(context.Context, Event) {
	return func(ctx context.Context, e Event) {
		lvl := severity(e.Kind)
		if !l.Enabled(ctx, lvl) {
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
		l.LogAttrs(ctx, lvl, "idem: "+e.Kind.String(), attrs...)
	}
}

func severity(k Kind) slog.Level {
	switch k {
	case Claimed, Replayed, Extended, Completed:
		return slog.LevelDebug
	case Mismatch, LeaseLost, UnknownUnsettled, ResultNotStored, Unscoped:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
