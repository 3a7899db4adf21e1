package idem_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/idem/saga"
)

// TestAttackSuccessAfterLocalLeaseLossRunsTwice: the heartbeat's
// extensions fail for a whole lease (the store unreachable: a plain error
// without delegating; or the extensions apply and every response is lost),
// nobody takes the key over, and fn, which ignores its cancelled context,
// returns a result. Do must not throw that result away and free the key:
// a retry must not run fn a second time. synctest's clock drives the
// heartbeat; the outage starts inside fn and ends when fn sees its context
// cancelled.
func TestAttackSuccessAfterLocalLeaseLossRunsTwice(t *testing.T) {
	for mode, outage := range map[string]idemtest.Hook{
		"unreachable":                       idemtest.Fail(errors.New("attack: connection refused")),
		"extensions-applied-responses-lost": idemtest.Lose,
	} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := idemtest.NewFaulty(memstore.New())
				opts := []idem.Option{idem.WithLease(300 * time.Millisecond)}
				var runs atomic.Int32
				fn := func(ctx context.Context) (int, error) {
					runs.Add(1)
					s.On("CompareAndSwap", outage) // every extension from here on
					<-ctx.Done()
					s.On("CompareAndSwap", nil)
					return 7, nil // the work is done; the result is good
				}
				v, err := idem.Do(context.Background(), s, "k", fn, opts...)
				t.Logf("first Do: %v, %v", v, err)
				v, err = idem.Do(context.Background(), s, "k", fn, opts...)
				if got := runs.Load(); got != 1 {
					t.Fatalf("fn ran %d times (second Do: %v, %v), want 1: a successful fn's key was released", got, v, err)
				}
			})
		})
	}
}

// TestAttackLeaseWriteAnsweredLostAfterCompetitor: a Lease write applies,
// its response is lost, and inside the gap a competitor legitimately moves
// the key on (claims the tombstone Release left; or, after the retention,
// claims a fresh incarnation over an expired completion). The resend finds
// the competitor's record. The write did apply, so the answer must be
// success or ErrUnknownOutcome, never ErrLeaseLost ("taken over, must not
// complete"), and the competitor's claim must stand.
func TestAttackLeaseWriteAnsweredLostAfterCompetitor(t *testing.T) {
	for _, op := range []string{"Release", "Complete"} {
		t.Run(op, func(t *testing.T) {
			ctx := context.Background()
			clk := newFakeClock()
			s := idemtest.NewFaulty(memstore.New(memstore.WithClock(clk.Now)))
			opts := []idem.Option{idem.WithClock(clk.Now), idem.WithRetention(time.Minute), idem.WithLease(time.Second)}
			a, _, err := idem.Claim(ctx, s, "k", opts...)
			if err != nil {
				t.Fatal(err)
			}
			var b *idem.Lease
			// A's write (the first CompareAndSwap) applies; b claims in the
			// gap; A's response is lost.
			s.On("CompareAndSwap", idemtest.Times(1, lostWith(func(ctx context.Context) {
				if op == "Complete" {
					clk.Advance(2 * time.Minute) // the completion's retention passes
				}
				var cerr error
				if b, _, cerr = idem.Claim(ctx, s.Store, "k", opts...); cerr != nil || b == nil {
					t.Errorf("competitor's claim in the gap: %v, %v", b, cerr)
				}
			})))
			if op == "Release" {
				err = a.Release(ctx)
			} else {
				err = a.Complete(ctx, []byte(`1`))
			}
			if b == nil {
				t.Fatal("no competitor")
			}
			if cerr := b.Complete(ctx, []byte(`2`)); cerr != nil {
				t.Fatalf("competitor's Complete after A's resend: %v", cerr)
			}
			if errors.Is(err, idem.ErrLeaseLost) {
				t.Fatalf("%s applied (response lost) and answered %v; want nil or ErrUnknownOutcome", op, err)
			}
		})
	}
}

// TestAttackStaleOwnerUnderLostResponses: A stalls past its lease; B takes
// over and the takeover's response is lost; B's Release applies, its
// response is lost, and C claims the tombstone inside the gap (C's own
// response lost too); then, after C completes and its retention passes, E
// claims a fresh incarnation. A wakes at each stage and tries every Lease
// write: each must fail with ErrLeaseLost and leave the later owner's
// record alone.
func TestAttackStaleOwnerUnderLostResponses(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := idemtest.NewFaulty(memstore.New(memstore.WithClock(clk.Now)))
	opts := []idem.Option{idem.WithClock(clk.Now), idem.WithRetention(time.Minute), idem.WithLease(time.Second)}
	a, _, err := idem.Claim(ctx, s, "k", opts...)
	if err != nil {
		t.Fatal(err)
	}
	a2, _, err := idem.Claim(ctx, s, "k2", opts...)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	s.On("CompareAndSwap", idemtest.Lose) // B's takeover
	b, _, err := idem.Claim(ctx, s, "k", opts...)
	if err != nil || b == nil || b.Attempt() == 1 {
		t.Fatalf("B's takeover: %v, %v", b, err)
	}
	s.On("CompareAndSwap", nil)
	requireFenced(t, "after B's takeover", a)
	c := releaseWithClaimInGap(t, s, b, opts)
	requireFenced(t, "over C's claim", a)
	requireFenced(t, "over C's claim", b)
	if _, _, err := idem.Claim(ctx, s, "k", opts...); !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("D while C runs: %v, want ErrInProgress", err)
	}
	if err := c.Complete(ctx, []byte(`"c"`)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	e, _, err := idem.Claim(ctx, s, "k", opts...)
	if err != nil || e == nil {
		t.Fatalf("E's fresh claim: %v, %v", e, err)
	}
	requireFenced(t, "over E's fresh incarnation", a)
	if err := e.Complete(ctx, []byte(`"e"`)); err != nil {
		t.Fatal(err)
	}
	// k2: its in-progress record expired (lease + retention), a fresh one
	// replaced it; the stale lease must not adopt or touch it.
	if _, _, err := idem.Claim(ctx, s, "k2", opts...); err != nil {
		t.Fatal(err)
	}
	requireFenced(t, "k2 over a fresh incarnation", a2)
}

// releaseWithClaimInGap: b's Release applies and its response is lost; in
// the gap C claims the tombstone through s, and the response to C's claim
// is lost too. It returns C's lease.
func releaseWithClaimInGap(t *testing.T, s *idemtest.Faulty, b *idem.Lease, opts []idem.Option) *idem.Lease {
	t.Helper()
	var c *idem.Lease
	s.On("CompareAndSwap", lostWith(func(ctx context.Context) { // b's release
		s.On("CompareAndSwap", idemtest.Lose) // C's claim of the tombstone
		var err error
		if c, _, err = idem.Claim(ctx, s, "k", opts...); err != nil {
			t.Errorf("C's claim: %v", err)
		}
		s.On("CompareAndSwap", nil)
	}))
	berr := b.Release(context.Background())
	t.Logf("B's release answered %v", berr)
	if c == nil {
		t.Fatal("no C")
	}
	return c
}

// requireFenced tries every write a stalled owner may still attempt
// (staleOps) with l; each must fail with ErrLeaseLost.
func requireFenced(t *testing.T, stage string, l *idem.Lease) {
	t.Helper()
	for name, w := range staleOps(context.Background(), l) {
		if err := w(); !errors.Is(err, idem.ErrLeaseLost) {
			t.Errorf("%s: stale %s: got %v, want ErrLeaseLost", stage, name, err)
		}
	}
}

// TestAttackCompleteLostDuplicateInGap: Complete applies and its response
// is lost; inside the gap a duplicate Do replays the stored answer. Then
// the same with Complete's first two attempts answered lost without being
// delegated at all (the resend is what applies). fn runs once, every
// caller gets the same answer, and the owner's Do succeeds.
func TestAttackCompleteLostDuplicateInGap(t *testing.T) {
	for _, delegated := range []bool{true, false} {
		t.Run(fmt.Sprint("delegated=", delegated), func(t *testing.T) {
			ctx := context.Background()
			s := idemtest.NewFaulty(memstore.New())
			var runs atomic.Int32
			fn := func(context.Context) (int32, error) { return 100 + runs.Add(1), nil }
			var dup int32
			var duperr error
			duplicate := func(ctx context.Context) { dup, duperr = idem.Do(ctx, s.Store, "k", fn) }
			if delegated {
				// Complete applies, the duplicate runs in the gap, the
				// response is lost.
				s.On("CompareAndSwap", idemtest.Times(1, lostWith(duplicate)))
			} else {
				// Complete's first attempt is lost before it is sent, with
				// the duplicate meanwhile; so is the second; the third applies.
				s.On("CompareAndSwap", idemtest.Times(2, func(ctx context.Context, c idemtest.Call, send func() error) error {
					if c.N == 1 {
						duplicate(ctx)
					}
					return idemtest.Drop(ctx, c, send)
				}))
			}
			v, err := idem.Do(ctx, s, "k", fn)
			if err != nil || runs.Load() != 1 {
				t.Fatalf("owner: %v, %v; runs %d", v, err, runs.Load())
			}
			if delegated && (duperr != nil || dup != v) {
				t.Fatalf("duplicate in the gap: %v, %v; owner got %v", dup, duperr, v)
			}
			if !delegated && !errors.Is(duperr, idem.ErrInProgress) {
				t.Fatalf("duplicate before the completion applied: %v, %v", dup, duperr)
			}
			if again, err := idem.Do(ctx, s, "k", fn); err != nil || again != v {
				t.Fatalf("replay: %v, %v; want %v", again, err, v)
			}
		})
	}
}

// TestAttackClaimHangUpLostResponses: the caller hangs up while its
// PutIfAbsent is in flight; the claim applies and its response is lost,
// and the Release Claim then makes also loses its response once. The key
// must be free for the next caller, and the hung-up Claim must return the
// caller's error.
func TestAttackClaimHangUpLostResponses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := idemtest.NewFaulty(memstore.New())
	// Every claim applies, the caller hangs up, the response is lost.
	s.On("PutIfAbsent", lostWith(func(context.Context) { cancel() }))
	s.On("CompareAndSwap", idemtest.Times(1, idemtest.Lose)) // the first release
	l, rec, err := idem.Claim(ctx, s, "k")
	if !errors.Is(err, context.Canceled) || l != nil || rec != nil {
		t.Fatalf("hung-up claim: %v, %v, %v", l, rec, err)
	}
	s.On("PutIfAbsent", nil)
	l, _, err = idem.Claim(context.Background(), s, "k")
	if err != nil || l == nil {
		t.Fatalf("next caller: %v, %v; want the key free", l, err)
	}
}

// TestAttackClaimUnknownWithoutDelegating: every PutIfAbsent answers
// ErrUnknownOutcome without reaching the store (a dead link), every read
// says absent. Claim must fail with an error that says so (the store's
// unknown outcome), after pausing between attempts, not report a lost race
// (ErrConflict) after a burst of back-to-back writes.
func TestAttackClaimUnknownWithoutDelegating(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := idemtest.NewFaulty(memstore.New())
		f.On("PutIfAbsent", idemtest.Drop)
		s := idemtest.NewCounting(f)
		start := time.Now()
		_, _, err := idem.Claim(context.Background(), s, "k")
		writes := s.Counts().PutIfAbsent
		t.Logf("Claim: %v after %d writes in %v", err, writes, time.Since(start))
		if errors.Is(err, idem.ErrConflict) || !errors.Is(err, idem.ErrUnknownOutcome) {
			t.Errorf("got %v, want an error matching ErrUnknownOutcome, not ErrConflict", err)
		}
		if writes > 1 && time.Since(start) == 0 {
			t.Errorf("%d writes back to back, no pause between them", writes)
		}
	})
}

// TestAttackAddLostResponses: Add's write (a) applies and its response is
// lost while more than the window of competitors land in the gap; (b) is
// answered lost without being delegated while the same happens; (c) is
// answered lost without being delegated, a competitor lands, Add re-sends,
// and then the first write is delivered late. The total must count every
// operation once, and Add must answer ErrUnknownOutcome exactly when it
// cannot prove what happened.
func TestAttackAddLostResponses(t *testing.T) {
	for _, mode := range []string{"applied", "not-delegated", "delivered-late"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			s := idemtest.NewFaulty(memstore.New())
			if _, _, err := (idem.Counter{Store: s, Key: "c", Window: 3}).Add(ctx, "seed", 1); err != nil {
				t.Fatal(err)
			}
			competitors := 4
			if mode == "delivered-late" {
				competitors = 1
			}
			others := func(ctx context.Context) {
				for i := range competitors {
					if _, _, err := (idem.Counter{Store: s.Store, Key: "c", Window: 3}).Add(ctx, fmt.Sprint("other", i), 10); err != nil {
						t.Error(err)
					}
				}
			}
			var late func() error
			hook := map[string]idemtest.Hook{
				"applied":       lostWith(others),
				"not-delegated": droppedWith(others),
				"delivered-late": func(ctx context.Context, c idemtest.Call, send func() error) error {
					late = send // kept, and sent after Add's answer
					others(ctx)
					return idemtest.Drop(ctx, c, send)
				},
			}[mode]
			s.On("CompareAndSwap", idemtest.Times(1, hook)) // Add's first write
			total, applied, err := idem.Counter{Store: s, Key: "c", Window: 3}.Add(ctx, "mine", 100)
			t.Logf("Add: %d, %v, %v", total, applied, err)
			if late != nil {
				if lerr := late(); !errors.Is(lerr, idem.ErrConflict) {
					t.Errorf("the late first write: %v, want a conflict", lerr)
				}
			}
			got, _ := idem.Counter{Store: s.Store, Key: "c"}.Value(ctx)
			base := int64(1 + 10*competitors)
			switch {
			case got != base && got != base+100:
				t.Fatalf("total %d, want %d or %d", got, base, base+100)
			case err == nil && (!applied || got != base+100):
				t.Fatalf("answered applied=%v with total %d", applied, got)
			case mode == "applied" && !errors.Is(err, idem.ErrUnknownOutcome):
				t.Fatalf("applied, then pushed out of the window: %v, want ErrUnknownOutcome", err)
			case mode == "delivered-late" && err != nil:
				t.Fatalf("provable case answered %v", err)
			}
		})
	}
}

// TestAttackPanicReleaseLostResponse: fn panics; the Release Do makes
// applies and its response is lost, and a competitor claims the tombstone
// and completes inside the gap. The panic must reach the caller unchanged,
// the competitor's answer must stand, and a third caller must replay it.
func TestAttackPanicReleaseLostResponse(t *testing.T) {
	ctx := context.Background()
	s := idemtest.NewFaulty(memstore.New())
	s.On("CompareAndSwap", idemtest.Times(1, lostWith(func(ctx context.Context) { // the release
		if v, err := idem.Do(ctx, s.Store, "k", func(context.Context) (string, error) { return "b", nil }); err != nil || v != "b" {
			t.Errorf("competitor in the gap: %v, %v", v, err)
		}
	})))
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		_, _ = idem.Do(ctx, s, "k", func(context.Context) (string, error) { panic("boom") })
	}()
	if v, err := idem.Do(ctx, s, "k", func(context.Context) (string, error) { return "c", nil }); err != nil || v != "b" {
		t.Fatalf("third caller: %v, %v; want b", v, err)
	}
}

// TestAttackGoexitKeepsClaim: fn calls runtime.Goexit. The claim must stay
// in progress (a duplicate gets ErrInProgress) and after the lease a
// duplicate takes over with Takeover true.
func TestAttackGoexitKeepsClaim(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := memstore.New(memstore.WithClock(clk.Now))
	opts := []idem.Option{idem.WithClock(clk.Now), idem.WithLease(time.Second), idem.WithoutHeartbeat()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = idem.Do(ctx, s, "k", func(context.Context) (int, error) { runtime.Goexit(); return 0, nil }, opts...)
	}()
	<-done
	if _, err := idem.Do(ctx, s, "k", func(context.Context) (int, error) { return 1, nil }, opts...); !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("duplicate after Goexit: %v, want ErrInProgress", err)
	}
	clk.Advance(2 * time.Second)
	v, err := idem.Do(ctx, s, "k", func(ctx context.Context) (int, error) {
		if l, ok := idem.LeaseFrom(ctx); !ok || l.Attempt() == 1 {
			return 0, errors.New("not a takeover")
		}
		return 2, nil
	}, opts...)
	if err != nil || v != 2 {
		t.Fatalf("takeover: %v, %v", v, err)
	}
}

// TestAttackConcurrentDuplicatesLossyStore: eight duplicates of Do, and of
// Once sharing one option slice with spare capacity, race on one key with
// WithWait while every third write loses its response after applying
// (run with -race; synctest's clock drives waits and heartbeats). fn runs
// once, every Do gets the same answer, exactly one Once reports ran.
func TestAttackConcurrentDuplicatesLossyStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idemtest.NewFaulty(memstore.New())
		s.On("PutIfAbsent", everyThirdLost)
		s.On("CompareAndSwap", everyThirdLost)
		base := make([]idem.Option, 0, 8)
		base = append(base, idem.WithWait(time.Minute), idem.WithLease(300*time.Millisecond))
		var runs, ran atomic.Int32
		var wg sync.WaitGroup
		answers := make([]int32, 8)
		errs := make([]error, 16)
		for i := range 8 {
			wg.Go(func() {
				answers[i], errs[i] = idem.Do(context.Background(), s, "k", func(context.Context) (int32, error) {
					n := runs.Add(1)
					time.Sleep(time.Second) // several heartbeats
					return 100 + n, nil
				}, base...)
			})
			wg.Go(func() {
				r, err := idem.Once(context.Background(), s, "e", func(context.Context) error {
					time.Sleep(time.Second)
					return nil
				}, base...)
				if r {
					ran.Add(1)
				}
				errs[8+i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
		}
		if runs.Load() != 1 || ran.Load() != 1 {
			t.Fatalf("Do's fn ran %d times, Once ran %d times; want 1 and 1", runs.Load(), ran.Load())
		}
		if slices.ContainsFunc(answers, func(a int32) bool { return a != 101 }) {
			t.Fatalf("answers %v, want all 101", answers)
		}
	})
}

// TestAttackSagaAbortLostResponse: a saga's second step fails permanently;
// the abort decision's PutIfAbsent applies and its response is lost, and
// the compensation's completion loses its response too. A re-run must
// report the abort, the first step's compensation must run exactly once,
// and no action may run twice.
func TestAttackSagaAbortLostResponse(t *testing.T) {
	ctx := context.Background()
	s := idemtest.NewFaulty(memstore.New())
	var book, charge, refund atomic.Int32
	body := func(ctx context.Context, sg *saga.Saga) error {
		if _, err := saga.Step(ctx, sg, "book", func(context.Context) (int, error) {
			book.Add(1)
			return 1, nil
		}, func(context.Context, int) error { refund.Add(1); return nil }); err != nil {
			return err
		}
		_, err := saga.Step(ctx, sg, "charge", func(context.Context) (int, error) {
			charge.Add(1)
			return 0, idem.Permanent(errors.New("card declined"))
		}, nil)
		return err
	}
	s.On("PutIfAbsent", func(ctx context.Context, c idemtest.Call, send func() error) error {
		if c.N != 4 { // saga, book, charge, abort
			return send()
		}
		return idemtest.Lose(ctx, c, send)
	})
	err1 := saga.Run(ctx, s, "trip", body)
	t.Logf("first run: %v", err1)
	s.On("PutIfAbsent", nil)
	var lostOnce atomic.Bool
	s.On("CompareAndSwap", func(ctx context.Context, c idemtest.Call, send func() error) error {
		if refund.Load() != 1 || lostOnce.Swap(true) {
			return send()
		}
		return idemtest.Lose(ctx, c, send) // the first write after the compensation ran
	})
	var err error
	for range 3 {
		if err = saga.Run(ctx, s, "trip", body); errors.Is(err, saga.ErrAborted) {
			break
		}
		t.Logf("re-run: %v", err)
	}
	if !errors.Is(err, saga.ErrAborted) {
		t.Fatalf("re-runs: %v, want ErrAborted", err)
	}
	if err := saga.Run(ctx, s, "trip", body); !errors.Is(err, saga.ErrAborted) {
		t.Fatalf("another re-run: %v", err)
	}
	if book.Load() != 1 || charge.Load() != 1 || refund.Load() != 1 {
		t.Fatalf("book %d, charge %d, refund %d; want 1 each", book.Load(), charge.Load(), refund.Load())
	}
}

// TestAttackWriteAfterCompleteAnswersLost: once a lease is completed,
// every write other than a repeat of the same Complete must fail with
// ErrLeaseLost (the Lease doc). Extend and a Complete with another answer
// are tried on a completed lease; the stored answer must not change.
func TestAttackWriteAfterCompleteAnswersLost(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	l, _, err := idem.Claim(ctx, s, "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Complete(ctx, []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if err := l.Complete(ctx, []byte(`1`)); err != nil {
		t.Fatalf("repeated Complete: %v", err)
	}
	for name, w := range map[string]func() error{
		"Extend":          func() error { return l.Extend(ctx, time.Hour) },
		"Complete(other)": func() error { return l.Complete(ctx, []byte(`2`)) },
		"Fail":            func() error { return l.CompleteError(ctx, "x", "x") },
		"Release":         func() error { return l.Release(ctx) },
	} {
		if err := w(); !errors.Is(err, idem.ErrLeaseLost) {
			t.Errorf("%s after Complete: got %v, want ErrLeaseLost", name, err)
		}
	}
	_, rec, err := idem.Claim(ctx, s, "k")
	if err != nil || rec == nil || string(rec) != "1" {
		t.Fatalf("replay: %v, %v", rec, err)
	}
}

// TestAttackExtendLostThenComplete: an extension applies but every
// response to it and to its resends is lost, so Extend answers
// ErrUnknownOutcome with the store one version ahead of the lease. The
// owner's Complete must still land (on its own newer record), a duplicate
// in between must find the key in progress, and the answer must replay.
func TestAttackExtendLostThenComplete(t *testing.T) {
	ctx := context.Background()
	s := idemtest.NewFaulty(memstore.New())
	l, _, err := idem.Claim(ctx, s, "k")
	if err != nil {
		t.Fatal(err)
	}
	s.On("CompareAndSwap", idemtest.Lose) // the extension and its resends
	if err := l.Extend(ctx, time.Minute); !errors.Is(err, idem.ErrUnknownOutcome) {
		t.Fatalf("Extend with every response lost: %v", err)
	}
	s.On("CompareAndSwap", nil)
	if _, _, err := idem.Claim(ctx, s, "k"); !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := l.Complete(ctx, []byte(`5`)); err != nil {
		t.Fatalf("Complete after the lost extension: %v", err)
	}
	if _, rec, err := idem.Claim(ctx, s, "k"); err != nil || rec == nil || string(rec) != "5" {
		t.Fatalf("replay: %v, %v", rec, err)
	}
}
