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
// whose outcome the store cannot tell is retried: the remembered IDs make
// that safe, and a nonce per call tells its own earlier attempt from a
// duplicate delivery. Options: WithWindow, WithAttempts, WithTTL (default:
// no expiry), WithKeyPrefix.
func Add(ctx context.Context, s Store, key, opID string, delta int64, opts ...Option) (total int64, applied bool, err error) {
	if opID == "" {
		return 0, false, &InputError{Key: key, Reason: "operation ID is empty"}
	}
	cfg, _, err := newConfig(key, opts)
	if err != nil {
		return 0, false, err
	}
	nonce := newToken()[:16]
	var c counter
	for attempt := 1; ; attempt++ {
		_, err = Update(ctx, s, key, func(value []byte, exists bool) ([]byte, error) {
			c, applied = counter{}, false
			if exists {
				if err := json.Unmarshal(value, &c); err != nil {
					return nil, &CorruptError{Key: key, Err: err}
				}
			}
			if i := slices.IndexFunc(c.Ops, func(op appliedOp) bool { return op.ID == opID }); i >= 0 {
				applied = c.Ops[i].By == nonce // our own attempt, whose response was lost
				return nil, ErrSkipUpdate
			}
			if (delta > 0 && c.Total > math.MaxInt64-delta) || (delta < 0 && c.Total < math.MinInt64-delta) {
				return nil, &InputError{Key: key, Reason: fmt.Sprintf("adding %d to %d overflows", delta, c.Total)}
			}
			c.Total += delta
			c.Ops = append(c.Ops, appliedOp{ID: opID, By: nonce})
			if n := len(c.Ops) - cfg.window; n > 0 {
				c.Ops = slices.Delete(c.Ops, 0, n)
			}
			applied = true
			return json.Marshal(c)
		}, opts...)
		if errors.Is(err, ErrUnknownOutcome) && attempt < cfg.attempts {
			continue
		}
		if err != nil {
			return 0, false, err
		}
		return c.Total, applied, nil
	}
}

// CounterValue returns the total of the counter at key; an absent counter
// is 0.
func CounterValue(ctx context.Context, s Store, key string, opts ...Option) (int64, error) {
	_, key, err := newConfig(key, opts)
	if err != nil {
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
	_, err = Do(ctx, s, id, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx)
	}, append(opts, WithReplayed(&replayed))...)
	var perm *PermanentError
	if errors.As(err, &perm) {
		return !perm.Replayed, err
	}
	if err != nil {
		return false, err
	}
	return !replayed, nil
}
