package idem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/idemkit/idemkit/idem/event"
)

// Update applies fn to the item at key with optimistic concurrency: it reads
// the item, calls fn with its value (exists is false when the key is
// absent), and writes the result with CompareAndSwap (PutIfAbsent for an
// absent key). When another writer got there first, fn is called again on
// the item carried by the conflict (no extra read), after a jittered
// backoff, up to WithAttempts times; then Update gives up with an error
// matching ErrConflict.
//
// fn may run several times and must have no side effects beyond computing
// the new value. An error from fn stops Update and is returned as is;
// ErrSkipUpdate leaves the item as it is.
func Update(ctx context.Context, s Store, key string, fn func(value []byte, exists bool) ([]byte, error), opts ...UpdateOption) (Item, error) {
	cfg, err := newUpdateConfig(key, opts)
	if err != nil {
		return Item{}, err
	}
	if err := checkStore(s, key); err != nil {
		return Item{}, err
	}
	var start time.Time
	if cfg.events != nil {
		start = time.Now()
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
			it, err = s.CompareAndSwap(ctx, key, cur.Version, next, cfg.expiry)
		} else {
			it, err = s.PutIfAbsent(ctx, key, next, cfg.expiry)
		}
		var ce *ConflictError
		if !errors.As(err, &ce) {
			if cfg.events != nil {
				reportWrite(ctx, cfg.events, "Update", key, attempt, start, err)
			}
			return it, err // success, or a failure that is not a lost race
		}
		if cfg.events != nil {
			cfg.events(ctx, event.Event{Kind: event.Conflict, Op: "Update", Key: key, Attempt: attempt, Err: err})
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

// Counter is an exactly-once counter at Key: Add applies each operation
// ID at most once, however often it is delivered. The zero values of the
// other fields are the defaults.
type Counter struct {
	Store Store
	Key   string
	// Window is how many recent operation IDs the counter remembers
	// (default 1000). An operation replayed after more than Window newer
	// ones is applied again, so size it beyond your redelivery horizon.
	Window int
	// Expiry, if positive, makes the counter expire that long after its
	// last write, forgetting its total and its operations together.
	Expiry time.Duration
	// Attempts bounds the CompareAndSwap attempts of one Add under
	// contention (default 10).
	Attempts int
	// Events, if set, is told what each Add does, as WithEvents: completed
	// (Attempt: the writes it took), replayed (a duplicate operation),
	// conflict per lost race, unknown settled (a lost response Add
	// resolved) and unknown unsettled.
	Events func(context.Context, event.Event)
}

// Add adds delta to the counter exactly once per operation ID: a replayed
// or redelivered opID changes nothing and reports applied false.
//
// The counter remembers the last Window operation IDs inside the item
// itself, so the check and the addition are one CompareAndSwap. A write
// whose outcome the store cannot tell is sent again only once the counter
// proves the first did not apply (it still stands at the version the write
// was conditioned on, or it still remembers every operation applied since
// and ours is not among them); a nonce per call tells its own earlier
// attempt from a duplicate delivery. When nothing can prove it either way
// (more than Window operations landed meanwhile), Add returns an error
// matching ErrUnknownOutcome rather than risk counting twice.
func (c Counter) Add(ctx context.Context, opID string, delta int64) (total int64, applied bool, err error) {
	if err := c.check(); err != nil {
		return 0, false, err
	}
	if opID == "" {
		return 0, false, invalid(c.Key, "operation ID is empty")
	}
	if c.Window == 0 {
		c.Window = defaultWindow
	}
	if c.Attempts == 0 {
		c.Attempts = defaultAttempts
	}
	a := &adder{c: c, opID: opID, delta: delta, nonce: newToken()[:16]}
	total, applied, err = a.run(ctx)
	if c.Events != nil && errors.Is(err, ErrUnknownOutcome) {
		c.Events(ctx, event.Event{Kind: event.UnknownUnsettled, Op: "Add", Key: c.Key, Err: err})
	}
	return total, applied, err
}

// Value returns the counter's total; an absent counter is 0.
func (c Counter) Value(ctx context.Context) (int64, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	cur, exists, err := getItem(ctx, c.Store, c.Key)
	if err != nil {
		return 0, err
	}
	v, err := decodeCounter(c.Key, cur, exists)
	return v.Total, err
}

func (c Counter) check() error {
	if err := checkKey(c.Key); err != nil {
		return err
	}
	switch {
	case c.Window < 0:
		return invalid(c.Key, fmt.Sprintf("window %d is negative", c.Window))
	case c.Attempts < 0:
		return invalid(c.Key, fmt.Sprintf("attempts %d is negative", c.Attempts))
	case c.Expiry < 0:
		return invalid(c.Key, fmt.Sprintf("expiry %v is negative", c.Expiry))
	}
	return checkStore(c.Store, c.Key)
}

// adder is one Add call.
type adder struct {
	c     Counter
	opID  string
	delta int64
	nonce string

	// unsure: a write of ours on top of base (or of an absent key, when
	// baseExists is false) may have applied.
	unsure     bool
	base       int64
	baseExists bool

	start time.Time // for events
	lost  error     // the last lost response, for events
}

func (a *adder) run(ctx context.Context) (int64, bool, error) {
	if a.c.Events != nil {
		a.start = time.Now()
	}
	cur, exists, err := getItem(ctx, a.c.Store, a.c.Key)
	if err != nil {
		return 0, false, err
	}
	backoff := newBackoff(5*time.Millisecond, 500*time.Millisecond)
	for attempt := 1; ; attempt++ {
		c, err := decodeCounter(a.c.Key, cur, exists)
		if err != nil {
			return 0, false, err
		}
		if i := slices.IndexFunc(c.Ops, func(op appliedOp) bool { return op.ID == a.opID }); i >= 0 {
			mine := c.Ops[i].By == a.nonce // our own attempt, whose response was lost
			if a.c.Events != nil {
				a.replayed(ctx, attempt, mine)
			}
			return c.Total, mine, nil
		}
		if a.unsure && !a.provenNotApplied(cur, exists, c) {
			return 0, false, unknown(a.c.Key, "Add", fmt.Errorf(
				"an earlier write of operation %q may have applied, and the counter no longer remembers every operation since", a.opID))
		}
		a.unsure = false
		err = a.write(ctx, attempt, c, cur, exists)
		var ce *ConflictError
		switch {
		case err == nil:
			return c.Total + a.delta, true, nil
		case errors.As(err, &ce):
			cur, exists = ce.Current, ce.Exists
		case errors.Is(err, ErrUnknownOutcome):
			a.lost = err
			a.unsure, a.base, a.baseExists = true, cur.Version, exists
			if cur, exists, err = getItem(ctx, a.c.Store, a.c.Key); err != nil {
				return 0, false, unknown(a.c.Key, "Add", err)
			}
		default:
			return 0, false, err
		}
		if err := a.retry(ctx, attempt, backoff); err != nil {
			return 0, false, err
		}
	}
}

// write writes c with the operation applied over cur (exists: cur is a
// stored item).
func (a *adder) write(ctx context.Context, attempt int, c counter, cur Item, exists bool) error {
	next, err := a.apply(c)
	if err != nil {
		return err
	}
	if exists {
		_, err = a.c.Store.CompareAndSwap(ctx, a.c.Key, cur.Version, next, a.c.Expiry)
	} else {
		_, err = a.c.Store.PutIfAbsent(ctx, a.c.Key, next, a.c.Expiry)
	}
	if a.c.Events != nil {
		a.wrote(ctx, attempt, err)
	}
	return err
}

// retry gives up after the last attempt, or waits before the next one.
func (a *adder) retry(ctx context.Context, attempt int, backoff *backoff) error {
	if attempt >= a.c.Attempts {
		if a.unsure {
			return unknown(a.c.Key, "Add", fmt.Errorf("gave up after %d attempts", attempt))
		}
		return fmt.Errorf("idem: add %q: gave up after %d attempts: %w", a.c.Key, attempt, ErrConflict)
	}
	return sleep(ctx, backoff.next())
}

// wrote reports a write of attempt that ended with err: completed, or a
// lost race. A lost response is reported once Add knows its fate.
func (a *adder) wrote(ctx context.Context, attempt int, err error) {
	var ce *ConflictError
	switch {
	case err == nil:
		a.completed(ctx, attempt)
	case errors.As(err, &ce):
		a.c.Events(ctx, event.Event{Kind: event.Conflict, Op: "Add", Key: a.c.Key, Attempt: attempt, Err: err})
	}
}

// replayed reports an operation found applied: by our own write, whose
// response was lost (mine), or by an earlier delivery.
func (a *adder) replayed(ctx context.Context, attempt int, mine bool) {
	if mine {
		a.completed(ctx, attempt)
		return
	}
	a.c.Events(ctx, event.Event{Kind: event.Replayed, Op: "Add", Key: a.c.Key, Attempt: attempt, Duration: time.Since(a.start)})
}

// completed reports our operation applied, after the lost response that
// hid it, if any.
func (a *adder) completed(ctx context.Context, attempt int) {
	if a.lost != nil {
		a.c.Events(ctx, event.Event{Kind: event.UnknownSettled, Op: "Add", Key: a.c.Key, Attempt: attempt, Err: a.lost})
	}
	a.c.Events(ctx, event.Event{Kind: event.Completed, Op: "Add", Key: a.c.Key, Attempt: attempt, Duration: time.Since(a.start)})
}

// apply returns the counter c with our operation added, encoded.
func (a *adder) apply(c counter) ([]byte, error) {
	d := a.delta
	if (d > 0 && c.Total > math.MaxInt64-d) || (d < 0 && c.Total < math.MinInt64-d) {
		return nil, invalid(a.c.Key, fmt.Sprintf("adding %d to %d overflows", d, c.Total))
	}
	c.Total += d
	c.Ops = append(c.Ops, appliedOp{ID: a.opID, By: a.nonce})
	if n := len(c.Ops) - a.c.Window; n > 0 {
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

// reportWrite reports Update's write of attempt, begun at start, that
// ended with err (not a lost race).
func reportWrite(ctx context.Context, events func(context.Context, event.Event), op, key string, attempt int, start time.Time, err error) {
	switch {
	case err == nil:
		events(ctx, event.Event{Kind: event.Completed, Op: op, Key: key, Attempt: attempt, Duration: time.Since(start)})
	case errors.Is(err, ErrUnknownOutcome):
		events(ctx, event.Event{Kind: event.UnknownUnsettled, Op: op, Key: key, Attempt: attempt, Err: err})
	}
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
		return counter{}, corrupt(key, err)
	}
	return c, nil
}

// Once runs fn at most once per event ID, for de-duplicating redelivered
// messages (SQS, Kafka, RabbitMQ). It reports whether fn ran now (false: a
// duplicate of an event already handled). An error from fn releases the ID
// so a redelivery runs fn again; a Permanent error is stored and returned
// for every duplicate.
func Once(ctx context.Context, s Store, id string, fn func(context.Context) error, opts ...Option) (ran bool, err error) {
	_, replayed, err := do(ctx, "Once", s, id, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx)
	}, opts)
	var perm *PermanentError
	if errors.As(err, &perm) {
		return !perm.Replayed, err
	}
	if err != nil {
		return false, err
	}
	return !replayed, nil
}
