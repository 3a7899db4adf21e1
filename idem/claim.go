package idem

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"sync"
	"time"
)

// maxConflicts bounds how often Claim retries after losing a race for a
// key, so a livelock surfaces as an error instead of a hang.
const maxConflicts = 32

// Claim takes key for the caller, the low-level half of Do for adapters that
// store more than a Go value (the HTTP middleware stores status, headers and
// body). Options: WithTTL, WithLease, WithWait, WithFingerprint, WithClock,
// WithKeyPrefix, WithReplayed.
//
// Exactly one of the results is set:
//   - a *Lease: the caller owns the key (a fresh claim, its own claim whose
//     response was lost, or a takeover of an expired lease) and must
//     Complete, Fail or Release it;
//   - a *Record: the key was completed before; Result or Error holds the
//     answer to replay;
//   - an error: *InProgressError (ErrInProgress) while another owner's lease
//     is live, *MismatchError (ErrMismatch) for a different fingerprint,
//     ErrInvalid for bad input, or the store's error.
//
// A first claim costs one write; a duplicate costs one write whose conflict
// carries the current record; a takeover costs a second write.
func Claim(ctx context.Context, s Store, key string, opts ...Option) (*Lease, *Record, error) {
	cfg, key, err := newConfig(key, opts)
	if err != nil {
		return nil, nil, err
	}
	return claim(ctx, s, key, cfg)
}

func claim(ctx context.Context, s Store, key string, cfg *config) (*Lease, *Record, error) {
	token := newToken()
	now := cfg.now()
	mine := Record{
		Status:      StatusInProgress,
		Token:       token,
		LeaseUntil:  now.Add(cfg.lease),
		Fingerprint: cfg.fingerprint,
		Attempt:     1,
		CreatedAt:   now,
	}
	deadline := now.Add(cfg.wait)
	backoff := newBackoff(20*time.Millisecond, time.Second)

	var (
		cur   Item
		have  bool // cur holds the key's current item
		races int  // writes lost to a race or of unknown outcome
	)
	for {
		if races > maxConflicts {
			return nil, nil, fmt.Errorf("idem: claim %q: gave up after %d lost races: %w", key, races, ErrConflict)
		}
		if !have {
			it, err := s.PutIfAbsent(ctx, key, EncodeRecord(mine), cfg.ttl)
			var ce *ConflictError
			switch {
			case err == nil:
				return newLease(s, key, cfg, it.Version, mine, false), nil, nil
			case errors.As(err, &ce) && ce.Exists:
				cur, have = ce.Current, true
			case errors.As(err, &ce):
				// Absent yet refused: it expired between the check and the
				// write. Try again.
				races++
			case errors.Is(err, ErrUnknownOutcome):
				// The store could not tell; our token tells.
				races++
				it, gerr := s.Get(ctx, key)
				if errors.Is(gerr, ErrNotFound) {
					continue
				}
				if gerr != nil {
					return nil, nil, err
				}
				cur, have = it, true
			default:
				return nil, nil, err
			}
			if !have {
				continue
			}
		}

		rec, err := DecodeRecord(key, cur.Value)
		if err != nil {
			return nil, nil, err
		}
		now := cfg.now()
		switch {
		case rec.Token == token:
			// Our own write, whose response was lost and whose retry
			// found it: we hold the claim.
			return newLease(s, key, cfg, cur.Version, rec, false), nil, nil
		case !bytes.Equal(rec.Fingerprint, cfg.fingerprint):
			return nil, nil, &MismatchError{Key: key}
		case rec.Status == StatusCompleted:
			if cfg.replayed != nil {
				*cfg.replayed = true
			}
			return nil, &rec, nil
		case rec.leasePassed(now):
			// The owner is gone: take over, fenced by the version we saw.
			next := mine
			next.LeaseUntil = now.Add(cfg.lease)
			next.Attempt = rec.Attempt + 1
			next.CreatedAt = rec.CreatedAt
			it, err := s.CompareAndSwap(ctx, key, cur.Version, EncodeRecord(next), cfg.ttl)
			var ce *ConflictError
			switch {
			case err == nil:
				return newLease(s, key, cfg, it.Version, next, true), nil, nil
			case errors.As(err, &ce):
				cur, have = ce.Current, ce.Exists
				races++
				continue
			case errors.Is(err, ErrUnknownOutcome):
				have = false // PutIfAbsent will show whose record is there
				races++
				continue
			default:
				return nil, nil, err
			}
		}

		// In progress under a live lease.
		if !now.Before(deadline) {
			return nil, nil, &InProgressError{Key: key, LeaseUntil: rec.LeaseUntil}
		}
		pause := min(backoff.next(), deadline.Sub(now), max(rec.LeaseUntil.Sub(now), time.Millisecond))
		if err := sleep(ctx, pause); err != nil {
			return nil, nil, err
		}
		it, err := s.Get(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			have = false
		case err != nil:
			return nil, nil, err
		default:
			cur = it
		}
	}
}

// Lease is a caller's hold on a claimed key. Its methods are fenced by the
// claim's version: once another claimer has taken the key over, they fail
// with ErrLeaseLost and change nothing. A Lease is safe for concurrent use.
type Lease struct {
	store    Store
	key      string
	cfg      *config
	takeover bool

	mu      sync.Mutex
	version int64
	rec     Record
}

func newLease(s Store, key string, cfg *config, version int64, rec Record, takeover bool) *Lease {
	if cfg.replayed != nil {
		*cfg.replayed = false
	}
	return &Lease{store: s, key: key, cfg: cfg, version: version, rec: rec, takeover: takeover}
}

// Key returns the claimed key, prefix included.
func (l *Lease) Key() string { return l.key }

// Token returns the claim's unique owner token.
func (l *Lease) Token() string { return l.rec.Token }

// Takeover reports whether the claim took over an owner whose lease had
// passed. That owner may have done part of the work: make the work itself
// safe to repeat, or check for its effects.
func (l *Lease) Takeover() bool { return l.takeover }

// Attempt is 1 for a first claim, plus one per takeover.
func (l *Lease) Attempt() int { return l.rec.Attempt }

// Until returns when the lease passes unless it is extended.
func (l *Lease) Until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.LeaseUntil
}

// Extend moves the lease to d from now. It fails with ErrLeaseLost if the
// key was taken over.
func (l *Lease) Extend(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return &InputError{Key: l.key, Reason: fmt.Sprintf("lease extension %v is not positive", d)}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.rec
	next.LeaseUntil = l.cfg.now().Add(d)
	return l.swap(ctx, "extend", next)
}

// Complete stores result as the answer for the key, kept for the TTL.
func (l *Lease) Complete(ctx context.Context, result []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.rec
	next.Status = StatusCompleted
	next.Result = append([]byte(nil), result...)
	next.CompletedAt = l.cfg.now()
	next.LeaseUntil = time.Time{}
	return l.swap(ctx, "complete", next)
}

// Fail stores a permanent error as the answer for the key: duplicates get it
// back instead of running again.
func (l *Lease) Fail(ctx context.Context, code, message string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.rec
	next.Status = StatusCompleted
	next.Error = &StoredError{Message: message, Code: code}
	next.CompletedAt = l.cfg.now()
	next.LeaseUntil = time.Time{}
	return l.swap(ctx, "fail", next)
}

// Release deletes the claim so that a retry can run again. Releasing a
// claim that has already vanished (expired, or released by a lost-response
// retry) succeeds.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range 2 {
		err := l.store.CompareAndDelete(ctx, l.key, l.version)
		var ce *ConflictError
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrUnknownOutcome):
			// A deletion leaves nothing to recognise, so the store cannot
			// settle it; the owner token can. Absent: released.
			cur, gerr := l.store.Get(ctx, l.key)
			if errors.Is(gerr, ErrNotFound) {
				return nil
			}
			if gerr != nil {
				return err
			}
			if !l.adopt(cur) {
				return l.lost("release")
			}
		case !errors.As(err, &ce):
			return err
		case !ce.Exists:
			return nil
		case !l.adopt(ce.Current):
			return l.lost("release")
		}
	}
	return l.lost("release")
}

// swap writes next over the claim, fenced by its version. l.mu must be held.
func (l *Lease) swap(ctx context.Context, op string, next Record) error {
	value := EncodeRecord(next)
	for range 2 {
		it, err := l.store.CompareAndSwap(ctx, l.key, l.version, value, l.cfg.ttl)
		var ce *ConflictError
		switch {
		case err == nil:
			l.version, l.rec = it.Version, next
			return nil
		case !errors.As(err, &ce):
			return err
		case ce.Exists && bytes.Equal(ce.Current.Value, value):
			// Our own write, whose response was lost.
			l.version, l.rec = ce.Current.Version, next
			return nil
		case !ce.Exists || !l.adopt(ce.Current):
			return l.lost(op)
		}
		// Adopted a newer version of our own in-progress record (an
		// earlier extension whose response was lost): try again.
	}
	return l.lost(op)
}

// adopt takes cur as the claim's current state if it is still our own
// in-progress record. l.mu must be held.
func (l *Lease) adopt(cur Item) bool {
	rec, err := DecodeRecord(l.key, cur.Value)
	if err != nil || rec.Token != l.rec.Token || rec.Status != StatusInProgress {
		return false
	}
	l.version, l.rec = cur.Version, rec
	return true
}

func (l *Lease) lost(op string) error {
	return fmt.Errorf("idem: %s %q (attempt %d): %w", op, l.key, l.rec.Attempt, ErrLeaseLost)
}

func newToken() string {
	b := make([]byte, 16)
	if _, err := cryptoRead(b); err != nil {
		panic(fmt.Sprintf("idem: reading random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}

var cryptoRead = rand.Read

// backoff yields jittered, doubling pauses.
type backoff struct{ cur, max time.Duration }

func newBackoff(start, max time.Duration) *backoff { return &backoff{cur: start, max: max} }

func (b *backoff) next() time.Duration {
	d := b.cur/2 + mathrand.N(b.cur/2+1)
	b.cur = min(2*b.cur, b.max)
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
