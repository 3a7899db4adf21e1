package idem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// ErrSkipUpdate, returned by an Update function, leaves the item unchanged;
// Update then returns the current item and a nil error.
var ErrSkipUpdate = errors.New("idem: skip update")

// Update applies fn to the item at key with optimistic concurrency: it reads
// the item, calls fn with its value (exists is false when the key is
// absent), and writes the result with CompareAndSwap (PutIfAbsent for an
// absent key). When another writer got there first, fn is called again on
// the item carried by the conflict (no extra read), after a jittered
// backoff, up to WithAttempts times; then Update gives up with an error
// matching ErrConflict. Options: WithAttempts, WithTTL (default: no expiry),
// WithKeyPrefix.
//
// fn may run several times and must have no side effects beyond computing
// the new value. An error from fn stops Update and is returned as is.
func Update(ctx context.Context, s Store, key string, fn func(value []byte, exists bool) ([]byte, error), opts ...Option) (Item, error) {
	cfg, key, err := newConfig(key, opts)
	if err != nil {
		return Item{}, err
	}
	if err := checkStore(s, key); err != nil {
		return Item{}, err
	}
	cur, err := s.Get(ctx, key)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Item{}, err
	}
	backoff := newBackoff(5*time.Millisecond, 500*time.Millisecond)
	for attempt := 1; ; attempt++ {
		var in []byte
		if exists {
			in = cur.Value
		}
		next, err := fn(in, exists)
		if errors.Is(err, ErrSkipUpdate) {
			if !exists {
				return Item{}, ErrNotFound
			}
			return cur, nil
		}
		if err != nil {
			return Item{}, err
		}
		var it Item
		if exists {
			it, err = s.CompareAndSwap(ctx, key, cur.Version, next, cfg.writeTTL())
		} else {
			it, err = s.PutIfAbsent(ctx, key, next, cfg.writeTTL())
		}
		var ce *ConflictError
		if !errors.As(err, &ce) {
			return it, err // success, or a failure that is not a lost race
		}
		if attempt >= cfg.attempts {
			return Item{}, fmt.Errorf("idem: update %q: gave up after %d attempts: %w", key, attempt, err)
		}
		cur, exists = ce.Current, ce.Exists
		if err := sleep(ctx, backoff.next()); err != nil {
			return Item{}, err
		}
	}
}

// counter is the stored form of an exactly-once counter.
type counter struct {
	Total int64       `json:"total"`
	Ops   []appliedOp `json:"ops"` // most recent last
}

// appliedOp is one operation remembered by a counter: its ID and a nonce of
// the Add call that applied it, so that call recognises its own write after
// a lost response.
type appliedOp struct {
	ID string `json:"id"`
	By string `json:"by"`
}

// Add adds delta to the counter at key exactly once per operation ID: a
// replayed or redelivered opID changes nothing and reports applied false.
// The counter remembers the last WithWindow operation IDs inside the item
// itself, so the check and the addition are one CompareAndSwap. A write
// whose outcome the store cannot tell is sent again only once the counter
// proves the first did not apply (it still stands at the version the
// write was conditioned on, or it still remembers every operation applied
// since and ours is not among them); a nonce per call tells its own earlier
// attempt from a duplicate delivery. When nothing can prove it either way
// (more than WithWindow operations landed meanwhile), Add returns an error
// matching ErrUnknownOutcome rather than risk counting twice. Options:
// WithWindow, WithAttempts, WithTTL (default: no expiry), WithKeyPrefix.
//
// A counter that expires (WithTTL) or is deleted forgets its total and its
// operations together.
func Add(ctx context.Context, s Store, key, opID string, delta int64, opts ...Option) (total int64, applied bool, err error) {
	if opID == "" {
		return 0, false, &InputError{Key: key, Reason: "operation ID is empty"}
	}
	cfg, full, err := newConfig(key, opts)
	if err != nil {
		return 0, false, err
	}
	if err := checkStore(s, full); err != nil {
		return 0, false, err
	}
	a := &adder{s: s, key: full, opID: opID, delta: delta, cfg: cfg, nonce: newToken()[:16]}
	return a.run(ctx)
}

// adder is one Add call.
type adder struct {
	s     Store
	key   string
	opID  string
	delta int64
	cfg   *config
	nonce string

	// unsure: a write of ours on top of base (or of an absent key, when
	// baseExists is false) may have applied.
	unsure     bool
	base       int64
	baseExists bool
}

func (a *adder) run(ctx context.Context) (int64, bool, error) {
	cur, exists, err := getItem(ctx, a.s, a.key)
	if err != nil {
		return 0, false, err
	}
	backoff := newBackoff(5*time.Millisecond, 500*time.Millisecond)
	for attempt := 1; ; attempt++ {
		c, err := decodeCounter(a.key, cur, exists)
		if err != nil {
			return 0, false, err
		}
		if i := slices.IndexFunc(c.Ops, func(op appliedOp) bool { return op.ID == a.opID }); i >= 0 {
			return c.Total, c.Ops[i].By == a.nonce, nil // By: our own attempt, whose response was lost
		}
		if a.unsure && !a.provenNotApplied(cur, exists, c) {
			return 0, false, &UnknownOutcomeError{Key: a.key, Op: "Add", Err: fmt.Errorf(
				"an earlier write of operation %q may have applied, and the counter no longer remembers every operation since", a.opID)}
		}
		a.unsure = false
		next, err := a.apply(c)
		if err != nil {
			return 0, false, err
		}
		if exists {
			_, err = a.s.CompareAndSwap(ctx, a.key, cur.Version, next, a.cfg.writeTTL())
		} else {
			_, err = a.s.PutIfAbsent(ctx, a.key, next, a.cfg.writeTTL())
		}
		var ce *ConflictError
		switch {
		case err == nil:
			return c.Total + a.delta, true, nil
		case errors.As(err, &ce):
			cur, exists = ce.Current, ce.Exists
		case errors.Is(err, ErrUnknownOutcome):
			a.unsure, a.base, a.baseExists = true, cur.Version, exists
			if cur, exists, err = getItem(ctx, a.s, a.key); err != nil {
				return 0, false, &UnknownOutcomeError{Key: a.key, Op: "Add", Err: err}
			}
		default:
			return 0, false, err
		}
		if attempt >= a.cfg.attempts {
			if a.unsure {
				return 0, false, &UnknownOutcomeError{Key: a.key, Op: "Add", Err: fmt.Errorf("gave up after %d attempts", attempt)}
			}
			return 0, false, fmt.Errorf("idem: add %q: gave up after %d attempts: %w", a.key, attempt, ErrConflict)
		}
		if err := sleep(ctx, backoff.next()); err != nil {
			return 0, false, err
		}
	}
}

// apply returns the counter c with our operation added, encoded.
func (a *adder) apply(c counter) ([]byte, error) {
	d := a.delta
	if (d > 0 && c.Total > math.MaxInt64-d) || (d < 0 && c.Total < math.MinInt64-d) {
		return nil, &InputError{Key: a.key, Reason: fmt.Sprintf("adding %d to %d overflows", d, c.Total)}
	}
	c.Total += d
	c.Ops = append(c.Ops, appliedOp{ID: a.opID, By: a.nonce})
	if n := len(c.Ops) - a.cfg.window; n > 0 {
		c.Ops = slices.Delete(c.Ops, 0, n)
	}
	return json.Marshal(c)
}

// provenNotApplied reports whether the counter as it stands now (cur, with
// operations c, not including ours) proves that our write of unknown
// outcome did not apply. Every write of a counter adds exactly one
// operation and one version, so a write of ours on top of version b would
// have made version b+1, and would still be remembered unless more than
// len(c.Ops) writes came after it.
func (a *adder) provenNotApplied(cur Item, exists bool, c counter) bool {
	switch {
	case !exists:
		// Absent: ours never applied, or the counter vanished since
		// (expired or deleted), and with it everything it had counted.
		return true
	case !a.baseExists:
		return false // created since by someone; we cannot place our write
	case cur.Version == a.base:
		return true // still at the version our write was conditioned on
	case cur.Version < a.base:
		return false
	}
	return int64(len(c.Ops)) >= cur.Version-a.base
}

func getItem(ctx context.Context, s Store, key string) (Item, bool, error) {
	it, err := s.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return Item{}, false, nil
	}
	return it, err == nil, err
}

func decodeCounter(key string, it Item, exists bool) (counter, error) {
	var c counter
	if !exists {
		return c, nil
	}
	if err := json.Unmarshal(it.Value, &c); err != nil {
		return counter{}, &CorruptError{Key: key, Err: err}
	}
	return c, nil
}

// CounterValue returns the total of the counter at key; an absent counter
// is 0.
func CounterValue(ctx context.Context, s Store, key string, opts ...Option) (int64, error) {
	_, key, err := newConfig(key, opts)
	if err != nil {
		return 0, err
	}
	if err := checkStore(s, key); err != nil {
		return 0, err
	}
	it, err := s.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var c counter
	if err := json.Unmarshal(it.Value, &c); err != nil {
		return 0, &CorruptError{Key: key, Err: err}
	}
	return c.Total, nil
}

// Once runs fn at most once per event ID, for de-duplicating redelivered
// messages (SQS, Kafka, RabbitMQ). It reports whether fn ran now (false: a
// duplicate of an event already handled). An error from fn releases the ID
// so a redelivery runs fn again; a Permanent error is stored and returned
// for every duplicate. Options as for Do.
func Once(ctx context.Context, s Store, id string, fn func(context.Context) error, opts ...Option) (ran bool, err error) {
	var replayed bool
	// A copy: the caller's slice may be shared, and its spare capacity too.
	opts = append(slices.Clip(opts), WithReplayed(&replayed))
	_, err = Do(ctx, s, id, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx)
	}, opts...)
	var perm *PermanentError
	if errors.As(err, &perm) {
		return !perm.Replayed, err
	}
	if err != nil {
		return false, err
	}
	return !replayed, nil
}
