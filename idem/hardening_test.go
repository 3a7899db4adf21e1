package idem_test

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/kernel"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/idem/saga"
)

// fakeClock is a settable clock for leases (idem.WithClock) and for
// memstore's expiry (memstore.WithClock).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// staleOps are the writes a stalled owner may still attempt.
func staleOps(ctx context.Context, l *idem.Lease) map[string]func() error {
	return map[string]func() error{
		"Complete": func() error { return l.Complete(ctx, []byte(`"stale"`)) },
		"Fail":     func() error { return l.CompleteError(ctx, "stale", "stale") },
		"Extend":   func() error { return l.Extend(ctx, time.Minute) },
		"Release":  func() error { return l.Release(ctx) },
	}
}

// TestFenceSurvivesReleaseAndReclaim is item 1 of the hardening list, the
// version ABA: A stalls past its lease; B takes the key over, fails and
// releases it; C claims it afresh. A wakes and tries every write it could
// make; each must fail with ErrLeaseLost, C's claim must stand, and a
// fourth caller must find the key in progress. Also with the record
// deleted by hand, and with the record expired, between B and C (a fresh
// PutIfAbsent then starts the key's versions above the old ones).
func TestFenceSurvivesReleaseAndReclaim(t *testing.T) {
	for _, between := range []string{"release", "delete", "expiry"} {
		for op := range staleOps(context.Background(), nil) {
			t.Run(between+"/"+op, func(t *testing.T) {
				ctx := context.Background()
				clk := newFakeClock()
				s := memstore.New(memstore.WithClock(clk.Now))
				opts := []idem.Option{idem.WithClock(clk.Now), idem.WithLease(time.Second), idem.WithRetention(time.Minute)}
				a, _, err := idem.Claim(ctx, s, "k", opts...)
				if err != nil {
					t.Fatal(err)
				}
				clk.Advance(2 * time.Second) // A stalls past its lease
				b, _, err := idem.Claim(ctx, s, "k", opts...)
				if err != nil || b == nil || b.Attempt() == 1 {
					t.Fatalf("B's takeover: %v, %v", b, err)
				}
				switch between {
				case "release":
					if err := b.Release(ctx); err != nil {
						t.Fatal(err)
					}
				case "delete":
					cur, err := s.Get(ctx, "k")
					if err != nil {
						t.Fatal(err)
					}
					if err := s.CompareAndDelete(ctx, "k", cur.Version); err != nil {
						t.Fatal(err)
					}
				case "expiry":
					if err := b.Release(ctx); err != nil {
						t.Fatal(err)
					}
					clk.Advance(2 * time.Minute)
				}
				c, _, err := idem.Claim(ctx, s, "k", opts...)
				if err != nil || c == nil {
					t.Fatalf("C's claim: %v, %v", c, err)
				}
				if err := staleOps(ctx, a)[op](); !errors.Is(err, idem.ErrLeaseLost) {
					t.Fatalf("stale A's %s over C's claim: got %v, want ErrLeaseLost", op, err)
				}
				if _, _, err := idem.Claim(ctx, s, "k", opts...); !errors.Is(err, idem.ErrInProgress) {
					t.Fatalf("a fourth caller while C runs: got %v, want ErrInProgress", err)
				}
				if err := c.Complete(ctx, []byte(`"c"`)); err != nil {
					t.Fatalf("C's completion after A's attempt: %v", err)
				}
			})
		}
	}
}

// TestInProgressOutlivesRetention is item 4: with a retention shorter than
// the lease (idemlambda's default mode has no heartbeat), a duplicate that
// arrives mid-fn, after the retention but within the lease, must find the
// claim in progress, not run fn a second time.
func TestInProgressOutlivesRetention(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := memstore.New(memstore.WithClock(clk.Now))
	opts := []idem.Option{idem.WithClock(clk.Now), idem.WithRetention(time.Second), idem.WithLease(time.Minute)}
	lease, _, err := idem.Claim(ctx, s, "k", opts...)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	if _, _, err := idem.Claim(ctx, s, "k", opts...); !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("duplicate within the lease, after the retention: got %v, want ErrInProgress", err)
	}
	if err := lease.Extend(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	clk.Advance(50 * time.Second) // past the first lease, within the extension
	if _, _, err := idem.Claim(ctx, s, "k", opts...); !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("duplicate within the extended lease: got %v, want ErrInProgress", err)
	}
	if err := lease.Complete(ctx, []byte(`1`)); err != nil {
		t.Fatal(err)
	}
}

// TestHeartbeatOutlivesCallerContext is item 5: the client times out and
// hangs up while fn, which ignores cancellation, keeps running for several
// leases. A retry must find the key in progress the whole time, and fn's
// context must still be cancelled with the caller's. Timing runs on
// testing/synctest's fake clock: exact, no sleeps that hope.
func TestHeartbeatOutlivesCallerContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memstore.New()
		opts := []idem.Option{idem.WithLease(300 * time.Millisecond), idem.WithHeartbeat(100 * time.Millisecond)}
		ctx, hangUp := context.WithCancel(context.Background())
		var runs atomic.Int32
		var sawCancel atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			idem.Do(ctx, s, "k", func(fctx context.Context) (int, error) {
				runs.Add(1)
				hangUp()
				time.Sleep(2 * time.Second) // ignores the cancellation: still working
				sawCancel.Store(fctx.Err() != nil)
				return 1, nil
			}, opts...)
		}()
		for range 6 {
			time.Sleep(300 * time.Millisecond)
			_, err := idem.Do(context.Background(), s, "k", func(context.Context) (int, error) { runs.Add(1); return 2, nil }, opts...)
			if !errors.Is(err, idem.ErrInProgress) {
				t.Fatalf("retry while the first fn still runs: got %v, want ErrInProgress", err)
			}
		}
		<-done
		if n := runs.Load(); n != 1 {
			t.Fatalf("fn ran %d times, want 1", n)
		}
		if !sawCancel.Load() {
			t.Error("fn's context was not cancelled with the caller's")
		}
	})
}

// TestHeartbeatMustBeShorterThanLease is item 6: a heartbeat that cannot
// keep the lease alive is bad input, rejected before anything is written.
func TestHeartbeatMustBeShorterThanLease(t *testing.T) {
	s := memstore.New()
	for _, hb := range []time.Duration{400 * time.Millisecond, 100 * time.Millisecond, 51 * time.Millisecond} {
		_, err := idem.Do(context.Background(), s, "k", ok, idem.WithLease(100*time.Millisecond), idem.WithHeartbeat(hb))
		if !errors.Is(err, idem.ErrInvalid) {
			t.Errorf("heartbeat %v with a 100ms lease: got %v, want ErrInvalid", hb, err)
		}
	}
	if s.Held() != 0 {
		t.Fatalf("rejected calls wrote %d items", s.Held())
	}
	if _, err := idem.Do(context.Background(), s, "k", ok, idem.WithLease(100*time.Millisecond), idem.WithHeartbeat(50*time.Millisecond)); err != nil {
		t.Fatalf("half the lease: %v", err)
	}
}

// TestClaimCallerHangsUp is item 7: the claim's write applied, but its
// answer arrived after the client's timeout (the hook cancels the caller's
// context in that gap, and the store answers with the context's error when
// it was handed the caller's context). The key must not stay blocked: the
// next request gets the key at once, and the first caller's fn never runs.
func TestClaimCallerHangsUp(t *testing.T) {
	ctx, hangUp := context.WithCancel(context.Background())
	s := idemtest.NewFaulty(memstore.New())
	s.On("PutIfAbsent", func(wctx context.Context, c idemtest.Call, send func() error) error {
		err := send()
		hangUp()
		if werr := wctx.Err(); werr != nil { // only if the write ran on the caller's context
			return werr
		}
		return err
	})
	ran := 0
	_, err := idem.Do(ctx, s, "k", func(context.Context) (int, error) { ran++; return 1, nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first call: got %v, want the caller's cancellation", err)
	}
	s.On("PutIfAbsent", nil)
	got, err := idem.Do(context.Background(), s, "k", func(context.Context) (int, error) { ran++; return 2, nil })
	if err != nil || got != 2 {
		t.Fatalf("retry after the hang-up: got %d, %v; want fn to run now", got, err)
	}
	if ran != 1 {
		t.Fatalf("fn ran %d times, want once (for the retry)", ran)
	}
}

// TestCompleteSettlesUnknownOutcome is item 8: the completion applied but
// its response was lost (once, then again and again). Once: Complete
// settles it by its own record and Do succeeds; duplicates replay it.
// Always: Do reports fn's result with ErrUnknownOutcome, and a retry of
// Complete with the same answer finds its own completion and succeeds.
func TestCompleteSettlesUnknownOutcome(t *testing.T) {
	ctx := context.Background()
	t.Run("once", func(t *testing.T) {
		s := idemtest.NewFaulty(memstore.New())
		s.On("CompareAndSwap", idemtest.Times(1, idemtest.Lose)) // the completion
		if got, err := idem.Do(ctx, s, "k", func(context.Context) (int, error) { return 7, nil }); err != nil || got != 7 {
			t.Fatalf("Do: got %d, %v; want 7 and the completion settled", got, err)
		}
		got, err := idem.Do(ctx, s, "k", func(context.Context) (int, error) { return 8, nil })
		if err != nil || got != 7 {
			t.Fatalf("duplicate: got %d, %v; want the stored 7", got, err)
		}
	})
	t.Run("always", func(t *testing.T) {
		s := idemtest.NewFaulty(memstore.New())
		lease, _, err := idem.Claim(ctx, s, "k")
		if err != nil {
			t.Fatal(err)
		}
		s.On("CompareAndSwap", idemtest.Lose) // the completion and every resend
		if err := lease.Complete(ctx, []byte(`7`)); !errors.Is(err, idem.ErrUnknownOutcome) {
			t.Fatalf("Complete whose every answer is lost: got %v, want ErrUnknownOutcome", err)
		}
		s.On("CompareAndSwap", nil)
		if err := lease.Complete(ctx, []byte(`7`)); err != nil {
			t.Fatalf("retry of Complete that finds its own completion: %v", err)
		}
		if err := lease.Complete(ctx, []byte(`7`)); err != nil {
			t.Fatalf("repeat of a Complete that succeeded: %v", err)
		}
		if err := lease.Complete(ctx, []byte(`8`)); !errors.Is(err, idem.ErrLeaseLost) {
			t.Fatalf("a different answer after completion: got %v, want ErrLeaseLost", err)
		}
		if err := lease.Release(ctx); !errors.Is(err, idem.ErrLeaseLost) {
			t.Fatalf("Release after completion: got %v, want ErrLeaseLost", err)
		}
	})
}

// limited refuses values over max bytes with ErrInvalid before writing, as
// every backend does for its item size limit.
type limited struct {
	idem.Store
	max int
}

func (l limited) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	if len(value) > l.max {
		return idem.Item{}, kernel.CheckSize(key, "value", len(value), l.max)
	}
	return l.Store.CompareAndSwap(ctx, key, version, value, ttl)
}

// unencodable is a result whose JSON encoding fails.
type unencodable string

func (unencodable) MarshalJSON() ([]byte, error) { return nil, errors.New("cannot encode a channel") }

// TestResultNotStored is items 9 and 10: fn succeeds with a result the
// store refuses as too large, or one that cannot be encoded. The caller
// gets fn's result with an error; the key gets a permanent answer, so no
// retry ever runs fn again.
func TestResultNotStored(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		testResultNotStored(t, limited{memstore.New(), 2048}, strings.Repeat("x", 4096))
	})
	t.Run("not encoded", func(t *testing.T) {
		testResultNotStored(t, memstore.New(), unencodable(strings.Repeat("x", 4096)))
	})
}

func testResultNotStored[T ~string](t *testing.T, s idem.Store, result T) {
	ctx := context.Background()
	runs := 0
	fn := func(context.Context) (T, error) { runs++; return result, nil }
	got, err := idem.Do(ctx, s, "k", fn)
	if err == nil || len(got) != 4096 {
		t.Fatalf("first call: got %d bytes, %v; want fn's result and an error", len(got), err)
	}
	for range 3 {
		_, err := idem.Do(ctx, s, "k", fn)
		var perm *idem.PermanentError
		if !errors.As(err, &perm) || perm.Code != idem.CodeResultNotStored || !perm.Replayed {
			t.Fatalf("retry: got %v, want the stored permanent error %s", err, idem.CodeResultNotStored)
		}
	}
	if runs != 1 {
		t.Fatalf("fn ran %d times, want 1", runs)
	}
}

// TestTakeoverRecognisedAfterLostResponse is item 11: the takeover's write
// applied and its response was lost; the claim finds its own record by its
// token, and must still say it is a takeover.
func TestTakeoverRecognisedAfterLostResponse(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := idemtest.NewFaulty(memstore.New())
	opts := []idem.Option{idem.WithClock(clk.Now), idem.WithLease(time.Second)}
	if _, _, err := idem.Claim(ctx, s, "k", opts...); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	s.On("CompareAndSwap", idemtest.Lose) // the takeover
	heir, _, err := idem.Claim(ctx, s, "k", opts...)
	if err != nil || heir == nil {
		t.Fatalf("takeover: %v", err)
	}
	if heir.Attempt() != 2 {
		t.Fatalf("got Attempt %d, want 2 (a takeover)", heir.Attempt())
	}
}

// TestAddNeverCountsTwice is item 12: Add's write applies, its response is
// lost, and in that gap other operations land on the counter. With fewer
// than the window, the retry proves its own write and counts it once; with
// more, nothing can prove it either way and Add must say so instead of
// counting again. And a write that did not apply before its response was
// lost is applied by the retry, once.
func TestAddNeverCountsTwice(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		others  int
		applied bool // whether the lost write applied
	}{
		{"applied, 3 others", 3, true},
		{"applied, window+1 others", 5, true},
		{"not applied, 3 others", 3, false},
		{"not applied, window+1 others", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := memstore.New()
			counter := idem.Counter{Store: inner, Key: "c", Window: 4}
			if _, _, err := counter.Add(ctx, "seed", 1); err != nil {
				t.Fatal(err)
			}
			otherOps := func(context.Context) {
				for i := range tc.others {
					if _, _, err := counter.Add(ctx, fmt.Sprint("other-", i), 10); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Our first write: sent, its response lost with the others in
			// the gap; or lost before it is sent while the others land.
			lost := lostWith(otherOps)
			if !tc.applied {
				lost = droppedWith(otherOps)
			}
			s := idemtest.NewFaulty(inner)
			s.On("CompareAndSwap", idemtest.Times(1, lost))
			mine := counter
			mine.Store = s
			total, applied, err := mine.Add(ctx, "mine", 100)
			final, verr := counter.Value(ctx)
			if verr != nil {
				t.Fatal(verr)
			}
			others := int64(1 + 10*tc.others)
			counted := (final - others) / 100
			provable := tc.others < 4
			switch {
			case counted > 1:
				t.Fatalf("counter is %d: our operation counted %d times", final, counted)
			case err == nil && (counted != 1 || !applied || total != final):
				t.Fatalf("got total %d, applied %v, nil error; the counter is %d (ours counted %d times)", total, applied, final, counted)
			case err != nil && !errors.Is(err, idem.ErrUnknownOutcome):
				t.Fatalf("got %v, want success or ErrUnknownOutcome", err)
			case err != nil && provable:
				t.Fatalf("got %v; with fewer operations than the window the outcome is provable", err)
			case err == nil && !provable && !tc.applied:
				t.Fatal("succeeded, yet nothing could prove the lost write did not apply")
			}
		})
	}
}

// TestOnceDoesNotWriteCallerOptions is item 13: Once must not append into
// the caller's option slice; two calls sharing a slice with spare capacity
// would race (the race detector sees it) and get each other's "ran" flag.
func TestOnceDoesNotWriteCallerOptions(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	if _, err := idem.Once(ctx, s, "old", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	shared := make([]idem.Option, 1, 4)
	shared[0] = idem.WithRetention(time.Hour)
	var wg sync.WaitGroup
	results := make([]bool, 8)
	for i := range results {
		wg.Go(func() {
			id := "old"
			if i%2 == 0 {
				id = fmt.Sprint("new-", i)
			}
			ran, err := idem.Once(ctx, s, id, func(context.Context) error { return nil }, shared...)
			if err != nil {
				t.Error(err)
			}
			results[i] = ran
		})
	}
	wg.Wait()
	for i, ran := range results {
		if want := i%2 == 0; ran != want {
			t.Errorf("call %d: ran %v, want %v", i, ran, want)
		}
	}
}

func explode(context.Context) (int, error) { panic("boom in fn") }

// TestPanicKeepsStack is item 19: a panic in fn reaches the caller with
// fn's frames on the stack (Do does not recover and re-panic), and the
// claim is released.
func TestPanicKeepsStack(t *testing.T) {
	s := memstore.New()
	var stack string
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("no panic")
			}
			stack = string(debug.Stack())
		}()
		idem.Do(context.Background(), s, "k", explode)
	}()
	if !strings.Contains(stack, "idem_test.explode") {
		t.Fatalf("the panic's stack lacks fn's frame:\n%s", stack)
	}
	if got, err := idem.Do(context.Background(), s, "k", func(context.Context) (int, error) { return 1, nil }); err != nil || got != 1 {
		t.Fatalf("retry after the panic: got %d, %v; want fn to run", got, err)
	}
}

// TestNilStore is item 20: every entry point rejects a nil Store with
// ErrInvalid instead of a nil dereference.
func TestNilStore(t *testing.T) {
	ctx := context.Background()
	calls := map[string]func() error{
		"Do": func() error { _, err := idem.Do(ctx, nil, "k", ok); return err },
		"Once": func() error {
			_, err := idem.Once(ctx, nil, "k", func(context.Context) error { return nil })
			return err
		},
		"Claim": func() error { _, _, err := idem.Claim(ctx, nil, "k"); return err },
		"Update": func() error {
			_, err := idem.Update(ctx, nil, "k", func([]byte, bool) ([]byte, error) { return nil, nil })
			return err
		},
		"Add":          func() error { _, _, err := idem.Counter{Store: nil, Key: "k"}.Add(ctx, "op", 1); return err },
		"CounterValue": func() error { _, err := idem.Counter{Store: nil, Key: "k"}.Value(ctx); return err },
		"saga.Run": func() error {
			return saga.Run(ctx, nil, "k", func(context.Context, *saga.Saga) error { return nil })
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, idem.ErrInvalid) {
			t.Errorf("%s with a nil Store: got %v, want ErrInvalid", name, err)
		}
	}
}

// exploding is a result whose JSON encoding panics.
type exploding int

func (exploding) MarshalJSON() ([]byte, error) { panic("MarshalJSON blew up") }

// TestEncodePanicStoresAnswer: fn succeeded, then encoding its result
// panics. The panic goes on, but the key gets a permanent answer first, so
// a retry does not run fn (and its side effect) again.
func TestEncodePanicStoresAnswer(t *testing.T) {
	s := memstore.New()
	runs := 0
	fn := func(context.Context) (exploding, error) { runs++; return 1, nil }
	func() {
		defer func() {
			if r := recover(); r != "MarshalJSON blew up" {
				t.Fatalf("recovered %v, want the encoder's panic", r)
			}
		}()
		idem.Do(context.Background(), s, "k", fn)
	}()
	_, err := idem.Do(context.Background(), s, "k", fn)
	var perm *idem.PermanentError
	if !errors.As(err, &perm) || perm.Code != idem.CodeResultNotStored || runs != 1 {
		t.Fatalf("retry: got %v after %d runs; want the stored %s and 1 run", err, runs, idem.CodeResultNotStored)
	}
}

// TestLateOwnClaimIsRenewed: the claim's write applied but its answer was
// lost, and the read that finds it comes when most of the lease has gone
// (the hook moves the clock in that gap). The claim renews the lease,
// fenced by the version, before handing it out, so a duplicate cannot take
// the key over just as fn starts.
func TestLateOwnClaimIsRenewed(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := idemtest.NewFaulty(memstore.New())
	s.On("PutIfAbsent", lostWith(func(context.Context) { clk.Advance(900 * time.Millisecond) }))
	opts := []idem.Option{idem.WithClock(clk.Now), idem.WithLease(time.Second)}
	lease, _, err := idem.Claim(ctx, s, "k", opts...)
	if err != nil || lease == nil {
		t.Fatalf("claim: %v", err)
	}
	if want := clk.Now().Add(time.Second); lease.Until().Before(want) {
		t.Fatalf("lease until %v, want renewed to %v", lease.Until(), want)
	}
	s.On("PutIfAbsent", nil)
	clk.Advance(500 * time.Millisecond) // the first lease has passed, the renewed one has not
	if _, _, err := idem.Claim(ctx, s, "k", opts...); !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("duplicate: got %v, want ErrInProgress", err)
	}
}
