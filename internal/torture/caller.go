package torture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	"github.com/idemkit/idemkit/idem"
)

// errByDesign is the error fn returns at random: Do releases the key and a
// later delivery runs fn again.
var errByDesign = errors.New("torture: fn failed by design")

// errLeaseGone is what fn returns when its context ends first: its lease
// was lost (the heartbeat could not reach the store for a whole lease).
var errLeaseGone = errors.New("torture: fn's context ended")

// callTimeout bounds one call of a caller.
const callTimeout = 40 * time.Second

// caller submits tasks to a store and records the evidence. One caller
// serves one goroutine: fn runs in the goroutine that calls Do, so the
// random source needs no lock.
type caller struct {
	store idem.Store
	log   *Log
	plan  Plan
	rng   *mathrand.Rand
	// crash ends the current call as a crashed process would: the child
	// SIGKILLs its process, an in-process worker ends its goroutine. It
	// does not return.
	crash    func()
	recovery bool // the recovery pass: no failures, no crashes, waits long
	// killAt, if above 0, makes this caller's killAt-th execution of fn
	// kill its process mid-work whatever the dice say, so that a run has
	// a self-kill even when the random ones do not come up.
	killAt int
	runs   int // executions of fn by this caller
}

// call submits t once, records the answer and returns its error.
func (c *caller) call(ctx context.Context, t Task) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	switch t.Kind {
	case KindDo:
		return c.do(ctx, t)
	case KindOnce:
		return c.once(ctx, t)
	}
	total, applied, err := idem.Counter{Store: c.store, Key: t.Key}.Add(ctx, t.Op, t.Delta)
	c.answer(Record{Kind: KindAdd, Key: t.Key, Op: t.Op, Task: t.Index, Applied: applied, Total: total}, err)
	return err
}

func (c *caller) options(t Task) []idem.Option {
	opts := []idem.Option{idem.WithLease(c.plan.Lease), idem.WithHeartbeat(c.plan.Heartbeat)}
	switch {
	case c.recovery:
		opts = append(opts, idem.WithWait(RecoveryWait(c.plan)))
	case t.Wait:
		opts = append(opts, idem.WithWait(c.plan.Wait))
	}
	return opts
}

func (c *caller) do(ctx context.Context, t Task) error {
	var ran string
	res, err := idem.Do(ctx, c.store, t.Key, func(ctx context.Context) (string, error) {
		ran = nonce()
		return c.work(ctx, t, ran)
	}, c.options(t)...)
	c.answer(Record{Kind: KindDo, Key: t.Key, Task: t.Index, Run: ran, Ran: ran != "", Res: res}, err)
	return err
}

func (c *caller) once(ctx context.Context, t Task) error {
	var ran string
	now, err := idem.Once(ctx, c.store, t.Key, func(ctx context.Context) error {
		ran = nonce()
		_, err := c.work(ctx, t, ran)
		return err
	}, c.options(t)...)
	c.answer(Record{Kind: KindOnce, Key: t.Key, Task: t.Index, Run: ran, Ran: now}, err)
	return err
}

func (c *caller) answer(r Record, err error) {
	r.Ev, r.Rec = EvAnswer, c.recovery
	if r.Err = ErrKind(err); err != nil {
		r.Msg = cut(err.Error(), 300)
	}
	c.log.Write(r)
}

// work is fn: it records its start with what its lease says, works for a
// while, fails, crashes or finishes at random, and records its end with
// the lease's deadline as the heartbeat last extended it; after finishing
// it may crash before returning. Its result names the process and the
// execution, so no two executions produce the same one.
func (c *caller) work(ctx context.Context, t Task, run string) (string, error) {
	start := Record{Ev: EvStart, Kind: t.Kind, Key: t.Key, Task: t.Index, Run: run, Rec: c.recovery}
	l, _ := idem.LeaseFrom(ctx)
	if l != nil {
		start.Att, start.TK, start.Until = l.Attempt(), l.Attempt() > 1, l.Until().UnixNano()
	}
	c.log.Write(start)
	r, err := c.outcome(ctx, t, run)
	if l != nil {
		r.Until = l.Until().UnixNano() // the last extension the heartbeat made
	}
	c.log.Write(r)
	if err == nil && c.chance(c.plan.KillLate) {
		c.crashNow(r)
	}
	return r.Res, err
}

// outcome works for a while, and then fails, crashes or finishes at
// random; it returns the record of fn's end, not yet written.
func (c *caller) outcome(ctx context.Context, t Task, run string) (Record, error) {
	end := Record{Kind: t.Kind, Key: t.Key, Task: t.Index, Run: run, Rec: c.recovery}
	if !sleepCtx(ctx, c.duration()) {
		end.Ev, end.Err = EvFail, ErrKind(errLeaseGone)
		return end, fmt.Errorf("%w: %w", errLeaseGone, context.Cause(ctx))
	}
	c.runs++
	if c.chance(c.plan.KillMid) || c.runs == c.killAt {
		c.crashNow(end)
	}
	if c.chance(c.plan.FnFail) {
		end.Ev, end.Err = EvFail, ErrKind(errByDesign)
		return end, errByDesign
	}
	if ctx.Err() != nil {
		end.Ev, end.Err = EvFail, ErrKind(errLeaseGone)
		return end, fmt.Errorf("%w: %w", errLeaseGone, context.Cause(ctx))
	}
	end.Ev, end.Res = EvOK, c.log.proc+"/"+run
	return end, nil
}

func (c *caller) crashNow(r Record) {
	r.Ev = EvSelfKill
	c.log.Write(r)
	c.crash()
}

// duration is how long fn works: mostly a few milliseconds, sometimes
// longer than the heartbeat interval, and now and then about a lease, so
// that the heartbeat must keep the key.
func (c *caller) duration() time.Duration {
	switch x := c.rng.Float64(); {
	case c.chance(c.plan.SlowFn):
		return c.plan.Lease/2 + time.Duration(c.rng.Int64N(int64(c.plan.Lease)))
	case x < 0.85:
		return time.Duration(c.rng.Int64N(int64(20 * time.Millisecond)))
	default:
		return 20*time.Millisecond + time.Duration(c.rng.Int64N(int64(300*time.Millisecond)))
	}
}

func (c *caller) chance(p float64) bool { return !c.recovery && p > 0 && c.rng.Float64() < p }

// ErrKind names an error for the records: "" for none.
func ErrKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, errByDesign):
		return "fn-failed"
	case errors.Is(err, errLeaseGone):
		return "fn-lease-gone"
	case errors.Is(err, idem.ErrInProgress):
		return "in-progress"
	case errors.Is(err, idem.ErrLeaseLost):
		return "lease-lost"
	case errors.Is(err, idem.ErrUnknownOutcome):
		return "unknown-outcome"
	case errors.Is(err, idem.ErrConflict):
		return "conflict"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// RecoveryWait is how long a recovery call waits for a key still in
// progress: every lease has passed when the pass starts, so a key still
// held after this long is stuck.
func RecoveryWait(p Plan) time.Duration { return 3*p.Lease + 5*time.Second }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func nonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
