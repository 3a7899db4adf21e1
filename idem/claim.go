package idem

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"time"
)

// maxConflicts bounds how often Claim retries after losing a race for a
// key, so a livelock surfaces as an error instead of a hang.
const maxConflicts = 32

// maxUnknown bounds how often Claim writes again after writes whose outcome
// the store could not tell and whose record a read did not find; it backs
// off between them.
const maxUnknown = 8

// Claim takes key for the caller: the low-level half of Do, for adapters
// that store more than a Go value (the HTTP middleware stores status,
// headers and body).
//
// Exactly one of these holds:
//   - lease is set: the caller owns the key (a fresh claim, its own claim
//     whose response was lost, a claim of a key its last owner released, or
//     a takeover of an expired lease) and must Complete, CompleteError or
//     Release it;
//   - lease is nil and err is nil: the key was completed before, and result
//     is its stored answer, to replay;
//   - err is a *PermanentError with Replayed set: the key was completed
//     before with that permanent error (Lease.CompleteError);
//   - err is another error: *InProgressError (ErrInProgress) while another
//     owner's lease is live, ErrMismatch for a different fingerprint,
//     ErrInvalid for bad input, or the store's error.
//
// The claim's writes run detached from ctx's cancellation, each bounded by
// ten seconds. If ctx ends while a write that takes the key is in flight,
// Claim releases the key again and returns ctx's error, so a caller that
// hangs up never leaves its key blocked for a lease.
//
// A first claim costs one write; a duplicate costs one write whose conflict
// carries the current record; a takeover, or a claim of a released key,
// costs a second write.
func Claim(ctx context.Context, s Store, key string, opts ...Option) (lease *Lease, result []byte, err error) {
	cfg, key, err := newConfig(key, opts)
	if err != nil {
		return nil, nil, err
	}
	cfg.op = "Claim"
	if err := checkStore(s, key); err != nil {
		return nil, nil, err
	}
	lease, rec, err := claim(ctx, s, key, cfg)
	switch {
	case err != nil || lease != nil:
		return lease, nil, err
	case rec.Error != nil:
		return nil, nil, replayError(rec.Error)
	}
	return nil, bytes.Clone(rec.Result), nil // the record may be a Cache's
}

// claimer is one Claim call.
type claimer struct {
	s     Store
	key   string
	cfg   *config
	mine  record    // the in-progress record a fresh claim writes
	races int       // writes lost to a race or of unknown outcome
	until time.Time // WithWait's deadline

	unknowns int   // unknown outcomes whose read found the key absent
	unknown  error // the last of them

	backoff backoff

	// For events (WithEvents):
	start  time.Time // when the claim began
	waited time.Time // when it first paused for another owner, if it did
	lost   error     // the last unknown outcome it met
}

// step is where one write or read of a claim leads.
type step struct {
	lease *Lease    // the caller holds the key
	rec   *record   // the key is completed: replay rec
	cur   Item      // the key's current item...
	have  bool      // ...when have is true
	busy  time.Time // in progress under a lease live until then
	err   error
}

func claim(ctx context.Context, s Store, key string, cfg *config) (*Lease, *record, error) {
	if ctx.Err() != nil {
		return nil, nil, context.Cause(ctx)
	}
	now := cfg.now()
	if rec := cfg.cache.get(s, key, now); rec != nil {
		var err error
		if !bytes.Equal(rec.Fingerprint, cfg.fingerprint) {
			rec, err = nil, mismatch(key)
		}
		if cfg.events != nil {
			(&claimer{key: key, cfg: cfg, start: now}).outcome(ctx, nil, rec, err)
		}
		return nil, rec, err
	}
	c := &claimer{s: s, key: key, cfg: cfg, until: now.Add(cfg.wait), start: now, mine: record{
		Status:      statusInProgress,
		Token:       newToken(),
		LeaseUntil:  now.Add(cfg.lease),
		Fingerprint: cfg.fingerprint,
		Attempt:     1,
		CreatedAt:   now,
	}}
	c.backoff = backoff{cur: 20 * time.Millisecond, max: time.Second}
	lease, rec, err := c.run(ctx)
	if cfg.events != nil {
		c.outcome(ctx, lease, rec, err)
	}
	if lease != nil {
		return c.won(ctx, lease)
	}
	return nil, rec, err
}

// run writes and reads until the claim is decided.
func (c *claimer) run(ctx context.Context) (*Lease, *record, error) {
	var st step
	for {
		if c.unknowns > maxUnknown {
			return nil, nil, fmt.Errorf("idem: claim %q: gave up after %d writes of unknown outcome: %w", c.key, c.unknowns, c.unknown)
		}
		if c.races > maxConflicts {
			return nil, nil, fmt.Errorf("idem: claim %q: gave up after %d lost races: %w", c.key, c.races, ErrConflict)
		}
		if st.have {
			st = c.decide(ctx, st.cur)
		} else {
			st = c.create(ctx)
		}
		switch {
		case st.err != nil:
			return nil, nil, st.err
		case st.lease != nil:
			return st.lease, nil, nil
		case st.rec != nil:
			return nil, st.rec, nil
		case !st.busy.IsZero():
			if err := c.pause(ctx, &c.backoff, st.busy); err != nil {
				return nil, nil, err
			}
			st = c.read(ctx)
		}
	}
}

// create writes a fresh claim.
func (c *claimer) create(ctx context.Context) step {
	wctx := detach(ctx)
	defer wctx.end()
	it, err := c.s.PutIfAbsent(wctx, c.key, encodeRecord(c.mine), c.cfg.inProgressTTL(c.cfg.lease))
	if err == nil {
		return step{lease: newLease(c.s, c.key, c.cfg, it.Version, c.mine, false)}
	}
	var ce *ConflictError // declared past the success, which then allocates nothing for it
	switch {
	case errors.As(err, &ce) && ce.Exists:
		return step{cur: ce.Current, have: true}
	case errors.As(err, &ce):
		c.races++ // absent yet refused: it expired between the check and the write
		return step{}
	case errors.Is(err, ErrUnknownOutcome):
		// The store could not tell; our token will. If the key is absent,
		// nothing is proven: write again, after a pause.
		c.races++
		c.lost = err
		st := c.read(wctx)
		if st.err == nil && !st.have {
			c.unknowns++
			c.unknown = err
			if err := sleep(ctx, c.backoff.next()); err != nil {
				return step{err: err}
			}
		}
		return st
	}
	return step{err: err}
}

// decide acts on the key's current item.
func (c *claimer) decide(ctx context.Context, cur Item) step {
	rec, err := decodeRecord(c.key, cur.Value)
	if err != nil {
		return step{err: err}
	}
	now := c.cfg.now()
	switch {
	case rec.Token == c.mine.Token && now.Before(rec.LeaseUntil.Add(-c.cfg.lease/2)):
		// Our own write, whose response was lost and which a read or a
		// conflict showed us: we hold the claim.
		return step{lease: newLease(c.s, c.key, c.cfg, cur.Version, rec, rec.Attempt > 1)}
	case rec.Token == c.mine.Token && rec.Status == statusInProgress:
		// Our own write, found so late that half its lease or more has
		// gone: renew the lease before handing it out, fenced by the
		// version, so nobody can take it over while fn starts.
		next := rec
		next.LeaseUntil = now.Add(c.cfg.lease)
		return c.swap(ctx, cur.Version, next, rec.Attempt > 1)
	case rec.Status == statusReleased:
		// Free again; claiming it over the tombstone keeps the key's
		// version chain, which fences every earlier owner.
		next := c.mine
		next.LeaseUntil = now.Add(c.cfg.lease)
		next.CreatedAt = now
		return c.swap(ctx, cur.Version, next, false)
	case !bytes.Equal(rec.Fingerprint, c.cfg.fingerprint):
		return step{err: mismatch(c.key)}
	case rec.Status == statusCompleted:
		c.cfg.cache.put(c.s, c.key, rec, cur.ExpiresAt)
		return step{rec: &rec}
	case rec.LeasePassed(now):
		// The owner is gone: take over, fenced by the version we saw.
		next := c.mine
		next.LeaseUntil = now.Add(c.cfg.lease)
		next.Attempt = rec.Attempt + 1
		next.CreatedAt = rec.CreatedAt
		return c.swap(ctx, cur.Version, next, true)
	}
	return step{busy: rec.LeaseUntil}
}

// swap takes the key over from the item at version.
func (c *claimer) swap(ctx context.Context, version int64, next record, takeover bool) step {
	wctx := detach(ctx)
	defer wctx.end()
	it, err := c.s.CompareAndSwap(wctx, c.key, version, encodeRecord(next), c.cfg.inProgressTTL(c.cfg.lease))
	if err == nil {
		return step{lease: newLease(c.s, c.key, c.cfg, it.Version, next, takeover)}
	}
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		c.races++
		return step{cur: ce.Current, have: ce.Exists}
	case errors.Is(err, ErrUnknownOutcome):
		c.races++
		c.lost = err
		return c.read(wctx) // our token tells, and the attempt tells a takeover
	}
	return step{err: err}
}

// read gets the key's current item.
func (c *claimer) read(ctx context.Context) step {
	it, err := c.s.Get(ctx, c.key)
	switch {
	case errors.Is(err, ErrNotFound):
		return step{}
	case err != nil:
		return step{err: err}
	}
	return step{cur: it, have: true}
}

// pause waits before the next look at a key in progress until busy, or
// gives up with ErrInProgress once WithWait's deadline has passed.
func (c *claimer) pause(ctx context.Context, backoff *backoff, busy time.Time) error {
	now := c.cfg.now()
	if !now.Before(c.until) {
		return &InProgressError{Key: c.key, LeaseUntil: busy}
	}
	if c.waited.IsZero() {
		c.waited = now
	}
	return sleep(ctx, min(backoff.next(), c.until.Sub(now), max(busy.Sub(now), time.Millisecond)))
}

// won hands the lease to the caller, or releases it again if the caller
// gave up while the claim was being written.
func (c *claimer) won(ctx context.Context, l *Lease) (*Lease, *record, error) {
	if ctx.Err() == nil {
		return l, nil, nil
	}
	rctx := detach(ctx)
	defer rctx.end()
	if err := l.release(rctx, context.Cause(ctx)); err != nil {
		return nil, nil, errors.Join(context.Cause(ctx), fmt.Errorf("idem: releasing %q after the caller gave up: %w", c.key, err))
	}
	return nil, nil, context.Cause(ctx)
}

// newToken returns 16 random bytes in hex. Both buffers stay on the
// stack: the string is its one allocation.
func newToken() string {
	var b [16]byte
	var h [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("idem: reading random bytes: %v", err))
	}
	hex.Encode(h[:], b[:])
	return string(h[:])
}

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
