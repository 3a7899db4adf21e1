package idem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxSettles bounds how often a Lease write is sent again after an unknown
// outcome before the error reaches the caller.
const maxSettles = 4

// Lease is a caller's hold on a claimed key. Its methods are fenced by the
// claim's version: once another claimer has taken the key over, or the key
// has moved on to a later incarnation (released and claimed again, deleted,
// expired and created afresh), they fail with ErrLeaseLost and change
// nothing. Versions never come back for a key (see kernel.FreshVersion for the
// bound), so a stalled owner can never act on a later claim.
//
// A Lease is safe for concurrent use. Complete, CompleteError and Release
// end it; after that, repeating the same Complete or CompleteError succeeds (a retry that
// finds its own answer) and every other write fails with ErrLeaseLost.
type Lease struct {
	store    Store
	key      string
	cfg      *config
	takeover bool
	attempt  int   // the claim's, which extensions keep: read without l.mu
	fence    int64 // the version of the claim's own first write

	mu      sync.Mutex
	version int64
	rec     record
	done    bool  // completed, failed or released
	unknown error // the last lost response the current swap met

	// For events (WithEvents):
	since    time.Time   // when the claim was won
	lostSaid atomic.Bool // event.LeaseLost was reported
}

func newLease(s Store, key string, cfg *config, version int64, rec record, takeover bool) *Lease {
	return &Lease{store: s, key: key, cfg: cfg, version: version, fence: version, rec: rec, takeover: takeover, attempt: rec.Attempt}
}

// Fence returns the claim's fence token, for conditional writes to the
// caller's own rows (see dynamo.FenceCondition and cassandra.FencedUpdate):
// write it with each row, and refuse a write whose fence is below the
// row's. Fences strictly increase from claim to claim of a key: a takeover,
// a claim of a released key, and a claim after the record was deleted or
// expired each get a higher fence than every claim before, and no two
// claims of a key share one. So once a later claim's write has landed, no
// stalled earlier owner's write can land after it.
//
// The fence is the version of the claim's own write, which Extend does not
// change. Within a record's life it increases by construction (every claim
// swaps over the version before it). After the record is gone it rests on
// kernel.FreshVersion: the new record starts above the old one as long as the
// clocks of the processes that claimed the key differ by less than the
// time between the two records' creation, which for Do, Claim and Once is
// at least the retention (WithRetention), and for a record deleted by hand
// its age. A claim's write still on its way to the database counts as lag
// (under contention Cassandra retries Paxos rounds for milliseconds): a
// record deleted by hand within milliseconds of its creation, while
// another claim of the key was in flight, can let that claim start the
// key below it (TestAttackFenceConcurrentLossyClaimers provokes it). Do
// not delete young records of keys in use. memstore needs no clock.
func (l *Lease) Fence() int64 { return l.fence }

// Key returns the claimed key, prefix included.
func (l *Lease) Key() string { return l.key }

// Attempt is 1 for a first claim (or a claim of a released key), plus one
// per takeover. Above 1, the claim took over an owner whose lease had
// passed, and that owner may have done part of the work: make the work
// itself safe to repeat, or check for its effects.
func (l *Lease) Attempt() int { return l.attempt }

// Until returns when the lease passes unless it is extended.
func (l *Lease) Until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.LeaseUntil
}

// Extend moves the lease to d from now. It fails with ErrLeaseLost if the
// key was taken over. The record is kept at least until the lease passes,
// plus the retention (WithRetention), whatever the retention.
func (l *Lease) Extend(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return invalid(l.key, fmt.Sprintf("lease extension %v is not positive", d))
	}
	return l.write(ctx, "extend", l.cfg.inProgressTTL(d), nil, func(next record) record {
		next.LeaseUntil = l.cfg.now().Add(d)
		return next
	})
}

// Complete stores result as the answer for the key, kept for the retention
// (WithRetention).
func (l *Lease) Complete(ctx context.Context, result []byte) error {
	return l.complete(ctx, append([]byte(nil), result...))
}

// complete is Complete of a result that the lease keeps: nobody else
// holds it (Do's own encoding of fn's result).
func (l *Lease) complete(ctx context.Context, result []byte) error {
	return l.write(ctx, "complete", l.cfg.retention, nil, func(next record) record {
		next.Status = statusCompleted
		next.Result = result
		next.Error = nil
		next.CompletedAt = l.cfg.now()
		next.LeaseUntil = time.Time{}
		return next
	})
}

// CompleteError stores a permanent error, message with an optional
// machine-readable code, as the answer for the key: duplicates get it back
// (a *PermanentError) instead of running again.
func (l *Lease) CompleteError(ctx context.Context, code, message string) error {
	return l.completeError(ctx, code, message, nil)
}

// completeError is CompleteError of the permanent error cause, for events
// (nil: made of code and message).
func (l *Lease) completeError(ctx context.Context, code, message string, cause error) error {
	return l.write(ctx, "complete-error", l.cfg.retention, cause, func(next record) record {
		next.Status = statusCompleted
		next.Result = nil
		next.Error = &storedError{Message: message, Code: code}
		next.CompletedAt = l.cfg.now()
		next.LeaseUntil = time.Time{}
		return next
	})
}

// Release gives the key up so that a retry can run again. It does not
// delete the record: it leaves a released record (a tombstone, kept for the
// retention) that the next claim takes over, so the key's versions go on
// rising and every earlier owner stays fenced. Releasing a claim whose
// record has vanished (expired, or deleted by hand) succeeds.
func (l *Lease) Release(ctx context.Context) error {
	return l.release(ctx, nil)
}

// release is Release because of cause (nil if unknown), for events.
func (l *Lease) release(ctx context.Context, cause error) error {
	return l.write(ctx, "release", l.cfg.retention, cause, func(next record) record {
		next.Status = statusReleased
		next.Result, next.Error = nil, nil
		next.LeaseUntil = time.Time{}
		next.CompletedAt = l.cfg.now()
		return next
	})
}

// errVanished: the claim's record is gone.
var errVanished = errors.New("idem: the claim's record is gone")

// write makes the next record of the claim with edit and writes it (op,
// with ttl), then reports it to the claim's events (cause: what led to it,
// if known). A write to a lease that had ended is not reported.
func (l *Lease) write(ctx context.Context, op string, ttl time.Duration, cause error, edit func(record) record) error {
	start, emit := l.cfg.emitting()
	next, unknown, ended, err := l.swapLocked(ctx, op, ttl, edit)
	if emit && !ended {
		l.report(ctx, op, next, start, unknown, cause, err)
	}
	return err
}

// swapLocked is write's part under l.mu: it returns the record it wrote,
// the last lost response it met, whether the lease had ended before, and
// the error. A release of a vanished record succeeds.
func (l *Lease) swapLocked(ctx context.Context, op string, ttl time.Duration, edit func(record) record) (next record, unknown error, ended bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ended = l.done
	next = edit(l.rec)
	err = l.swap(ctx, op, next, ttl)
	if errors.Is(err, errVanished) {
		l.done, err = true, nil
	}
	return next, l.unknown, ended, err
}

// swap writes next over the claim, fenced by its version. A write whose
// outcome the store cannot tell is sent again, up to maxSettles times while
// ctx lives: the version condition lets at most one of the copies apply,
// and a copy that finds the record already written, byte for byte (the
// record holds the owner token), is our own. l.mu must be held.
func (l *Lease) swap(ctx context.Context, op string, next record, ttl time.Duration) error {
	if l.done {
		switch {
		case (op == "complete" || op == "complete-error") && l.rec.Status == statusCompleted && sameAnswer(l.rec, next):
			return nil // a retry of the Complete or CompleteError that ended the lease
		case op == "release" && l.rec.Status == statusReleased:
			return nil // a retry of the Release that ended it
		}
		return fmt.Errorf("idem: %s %q (attempt %d): the lease has ended (%s): %w", op, l.key, l.rec.Attempt, l.rec.Status, ErrLeaseLost)
	}
	value := encodeRecord(next)
	backoff := newBackoff(10*time.Millisecond, 500*time.Millisecond)
	settles, adopts := 0, 0
	l.unknown = nil
	for {
		it, err := l.send(ctx, op, value, ttl)
		if err == nil {
			l.accept(it, next)
			return nil
		}
		var ce *ConflictError // declared past the success, which then allocates nothing for it
		switch {
		case errors.As(err, &ce) && !ce.Exists:
			if next.Status == statusReleased {
				return errVanished
			}
			return l.moved(op, settles > 0)
		case errors.As(err, &ce):
			switch l.recognise(ce.Current, next, value) {
			case mineApplied:
				l.accept(ce.Current, next) // our own write, whose response was lost
				return nil
			case mineEarlier:
				// A newer version of our own in-progress record (an
				// extension whose response was lost): write over that one.
				if adopts++; adopts <= maxSettles {
					continue
				}
			}
			return l.moved(op, settles > 0)
		case errors.Is(err, ErrUnknownOutcome) && settles < maxSettles && ctx.Err() == nil:
			settles++
			l.unknown = err
			if err := sleep(ctx, backoff.next()); err != nil {
				return errors.Join(err, fmt.Errorf("idem: %s %q: %w", op, l.key, ErrUnknownOutcome))
			}
		case settles > 0 && !errors.Is(err, ErrUnknownOutcome):
			// An earlier copy may have applied: this copy's failure says
			// nothing of it.
			return unknown(l.key, op, fmt.Errorf("an earlier attempt's response was lost, and the attempt sent again failed: %w", err))
		default:
			return err
		}
	}
}

// send sends one copy of a swap: a completion through the claim's commit (WithCommit)
// (WithCommit) when it has one, anything else to the store.
func (l *Lease) send(ctx context.Context, op string, value []byte, ttl time.Duration) (Item, error) {
	if op == "complete" && l.cfg.commit != nil {
		return l.cfg.commit(ctx, l.key, l.version, value, ttl)
	}
	return l.store.CompareAndSwap(ctx, l.key, l.version, value, ttl)
}

// accept records a write of ours that applied, as the item it made; an
// answer goes into the claim's Cache. l.mu must be held.
func (l *Lease) accept(it Item, next record) {
	l.version, l.rec = it.Version, next
	l.done = next.Status != statusInProgress
	l.cfg.cache.put(l.store, l.key, next, it.ExpiresAt)
}

// What a conflict's current item is to a Lease write.
const (
	notMine     = iota // another claim's record, or not a record at all
	mineApplied        // the write itself: it applied, its response was lost
	mineEarlier        // our own in-progress record at a newer version, now adopted
)

// recognise tells whether cur, found by a write of next (encoded as value),
// is our own: the write itself (byte for byte; or, for an answer, the same
// answer from an earlier call whose response was lost), or our in-progress
// record at a newer version, which it adopts. l.mu must be held.
func (l *Lease) recognise(cur Item, next record, value []byte) int {
	rec, err := decodeRecord(l.key, cur.Value)
	switch {
	case err != nil || rec.Token != l.rec.Token:
		return notMine
	case bytes.Equal(cur.Value, value):
		return mineApplied
	case rec.Status == statusCompleted && next.Status == statusCompleted && sameAnswer(rec, next):
		return mineApplied
	case rec.Status == statusReleased && next.Status == statusReleased:
		return mineApplied
	case rec.Status == statusInProgress:
		l.version, l.rec = cur.Version, rec
		return mineEarlier
	}
	return notMine
}

// sameAnswer reports whether two completed records give the same answer.
func sameAnswer(a, b record) bool {
	if (a.Error == nil) != (b.Error == nil) {
		return false
	}
	if a.Error != nil && *a.Error != *b.Error {
		return false
	}
	return bytes.Equal(a.Result, b.Result)
}

// moved reports a write that found the key moved on to a record not ours.
// If an earlier copy of the write may have applied (unsure), the key may
// have moved on after it: for an answer or a release that is an unknown
// outcome, not a lost lease. An extension finding someone else's record
// has lost the lease either way.
func (l *Lease) moved(op string, unsure bool) error {
	if unsure && op != "extend" {
		return unknown(l.key, op, fmt.Errorf(
			"an earlier attempt's response was lost, and the key has since moved on to a record not ours (attempt %d)", l.rec.Attempt))
	}
	return l.lost(op)
}

func (l *Lease) lost(op string) error {
	return fmt.Errorf("idem: %s %q (attempt %d): %w", op, l.key, l.rec.Attempt, ErrLeaseLost)
}

// KeepAlive starts a heartbeat that extends the lease by the claim's lease
// duration (WithLease) every interval, until stop is called. It returns a
// context derived from ctx that is cancelled, with a cause matching
// ErrLeaseLost, once the lease is lost: taken over, or not extended before
// it passed, and that carries the lease (LeaseFrom). Do uses it while fn
// runs; adapters that hold a Lease from Claim use it while their work runs
// (so an idemhttp handler finds its lease, and its Fence, with LeaseFrom).
//
// An interval <= 0 means a third of the lease; one over half the lease is
// lowered to half, so one late extension does not let the lease pass.
//
// The heartbeat runs until stop, not until ctx ends: work that ignores a
// cancelled context is still running, and its key must stay held. Each
// extension runs detached from ctx's cancellation, bounded by the interval.
// stop ends the heartbeat and waits for it; it may be called more than
// once.
func (l *Lease) KeepAlive(ctx context.Context, every time.Duration) (_ context.Context, stop func()) {
	hb := l.keepAlive(ctx, every)
	return hb.ctx, hb.stop
}

type leaseKey struct{}

// LeaseFrom returns the Lease that Do holds while it runs fn, from fn's
// context, or the Lease whose KeepAlive made the context. fn uses it to
// learn whether it is a takeover (Lease.Attempt above 1: a previous owner died
// mid-work and may have done part of it), which attempt it is, and the
// fence for its own writes (Lease.Fence).
func LeaseFrom(ctx context.Context) (*Lease, bool) {
	l, ok := ctx.Value(leaseKey{}).(*Lease)
	return l, ok
}
