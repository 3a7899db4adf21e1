package idem_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

// events collects the events of WithEvents.
type events struct {
	mu  sync.Mutex
	all []event.Event
}

func (e *events) add(_ context.Context, ev event.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// take returns the events so far and forgets them.
func (e *events) take() []event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	all := e.all
	e.all = nil
	return all
}

func kinds(evs []event.Event) []event.Kind {
	var ks []event.Kind
	for _, e := range evs {
		ks = append(ks, e.Kind)
	}
	return ks
}

// want checks that evs are of the kinds want, in order, and all for op and
// key.
func wantEvents(t *testing.T, evs []event.Event, op, key string, want ...event.Kind) {
	t.Helper()
	if got := kinds(evs); !slices.Equal(got, want) {
		t.Fatalf("events: got %v, want %v (%+v)", got, want, evs)
	}
	for _, e := range evs {
		if e.Op != op || e.Key != key {
			t.Errorf("%v: got op %q, key %q; want %q, %q", e.Kind, e.Op, e.Key, op, key)
		}
	}
}

const (
	claimed       = event.Claimed
	takeover      = event.Takeover
	replayed      = event.Replayed
	inProgress    = event.InProgress
	waited        = event.Waited
	mismatch      = event.Mismatch
	extended      = event.Extended
	leaseLost     = event.LeaseLost
	completed     = event.Completed
	failed        = event.FailedPermanently
	notStored     = event.ResultNotStored
	released      = event.Released
	settled       = event.UnknownSettled
	unsettled     = event.UnknownUnsettled
	conflictEvent = event.Conflict
)

// TestEventsDo: the events of Do's paths, in order, each once, on memstore.
func TestEventsDo(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	t.Run("first/replay", func(t *testing.T) {
		var ev events
		s := memstore.New()
		start := time.Now()
		if _, err := idem.Do(ctx, s, "k", ok, idem.WithEvents(ev.add), idem.WithKeyPrefix("p/"), idem.WithLease(time.Minute)); err != nil {
			t.Fatal(err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "p/k", claimed, completed)
		if c := evs[0]; c.Attempt != 1 || c.Until.Before(start.Add(time.Minute)) || c.Until.After(time.Now().Add(time.Minute)) {
			t.Errorf("claimed: got attempt %d, until %v; want 1 and a minute from the claim", c.Attempt, c.Until)
		}
		if _, err := idem.Do(ctx, s, "k", ok, idem.WithEvents(ev.add), idem.WithKeyPrefix("p/")); err != nil {
			t.Fatal(err)
		}
		wantEvents(t, ev.take(), "Do", "p/k", replayed)
	})
	t.Run("cached replay and mismatch", func(t *testing.T) {
		var ev events
		s, c := memstore.New(), idem.NewCache(10, 0)
		opts := func(fp string) []idem.Option {
			return []idem.Option{idem.WithEvents(ev.add), idem.WithCache(c), idem.WithFingerprint([]byte(fp))}
		}
		idem.Do(ctx, s, "k", ok, opts("a")...)
		idem.Do(ctx, s, "k", ok, opts("a")...) // from the cache
		if _, err := idem.Do(ctx, s, "k", ok, opts("b")...); !errors.Is(err, idem.ErrMismatch) {
			t.Fatalf("got %v, want ErrMismatch", err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", claimed, completed, replayed, mismatch)
		if !errors.Is(evs[3].Err, idem.ErrMismatch) {
			t.Errorf("mismatch: got err %v", evs[3].Err)
		}
		// The same from the store.
		s2 := memstore.New()
		idem.Do(ctx, s2, "k", ok, idem.WithFingerprint([]byte("a")))
		idem.Do(ctx, s2, "k", ok, idem.WithFingerprint([]byte("b")), idem.WithEvents(ev.add))
		wantEvents(t, ev.take(), "Do", "k", mismatch)
	})
	t.Run("in progress", func(t *testing.T) {
		var ev events
		s := memstore.New()
		lease, _, err := idem.Claim(ctx, s, "k", idem.WithLease(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := idem.Do(ctx, s, "k", ok, idem.WithEvents(ev.add)); !errors.Is(err, idem.ErrInProgress) {
			t.Fatalf("got %v, want ErrInProgress", err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", inProgress)
		if !evs[0].Until.Equal(lease.Until()) {
			t.Errorf("in progress: got until %v, want the owner's %v", evs[0].Until, lease.Until())
		}
	})
	t.Run("release on error", func(t *testing.T) {
		var ev events
		if _, err := idem.Do(ctx, memstore.New(), "k", func(context.Context) (int, error) { return 0, boom }, idem.WithEvents(ev.add)); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", claimed, released)
		if !errors.Is(evs[1].Err, boom) {
			t.Errorf("released: got err %v, want fn's", evs[1].Err)
		}
	})
	t.Run("permanent failure", func(t *testing.T) {
		var ev events
		s := memstore.New()
		fail := func(context.Context) (int, error) { return 0, &idem.PermanentError{Code: "card-declined", Err: boom} }
		idem.Do(ctx, s, "k", fail, idem.WithEvents(ev.add))
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", claimed, failed)
		var perm *idem.PermanentError
		if !errors.As(evs[1].Err, &perm) || perm.Code != "card-declined" {
			t.Errorf("failed: got err %v, want the permanent error", evs[1].Err)
		}
		idem.Do(ctx, s, "k", fail, idem.WithEvents(ev.add))
		wantEvents(t, ev.take(), "Do", "k", replayed)
	})
	t.Run("result not stored", func(t *testing.T) {
		var ev events
		unencodable := func(context.Context) (func(), error) { return func() {}, nil }
		if _, err := idem.Do(ctx, memstore.New(), "k", unencodable, idem.WithEvents(ev.add)); err == nil {
			t.Fatal("want an error")
		}
		wantEvents(t, ev.take(), "Do", "k", claimed, notStored)
		// Too large for the store.
		s := memstore.New(memstore.WithLimits(memstore.DynamoDBLimits))
		huge := func(context.Context) (string, error) { return strings.Repeat("x", 500<<10), nil }
		if _, err := idem.Do(ctx, s, "k", huge, idem.WithEvents(ev.add)); !errors.Is(err, idem.ErrInvalid) {
			t.Fatalf("got %v, want ErrInvalid", err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", claimed, notStored)
		if !errors.Is(evs[1].Err, idem.ErrInvalid) {
			t.Errorf("result not stored: got err %v, want the store's refusal", evs[1].Err)
		}
	})
	t.Run("takeover", func(t *testing.T) {
		var ev events
		s := memstore.New()
		if _, _, err := idem.Claim(ctx, s, "k", idem.WithLease(time.Second)); err != nil {
			t.Fatal(err)
		}
		future := func() time.Time { return time.Now().Add(time.Hour) }
		if _, err := idem.Do(ctx, s, "k", ok, idem.WithEvents(ev.add), idem.WithClock(future)); err != nil {
			t.Fatal(err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", takeover, completed)
		if evs[0].Attempt != 2 || evs[1].Attempt != 2 {
			t.Errorf("got attempts %d, %d; want 2", evs[0].Attempt, evs[1].Attempt)
		}
	})
	t.Run("caller gives up mid-claim", func(t *testing.T) {
		var ev events
		s := idemtest.NewFaulty(memstore.New())
		cctx, cancel := context.WithCancel(ctx)
		s.On("PutIfAbsent", func(ctx context.Context, c idemtest.Call, send func() error) error {
			cancel()
			return send()
		})
		if _, err := idem.Do(cctx, s, "k", ok, idem.WithEvents(ev.add)); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", claimed, released)
		if !errors.Is(evs[1].Err, context.Canceled) {
			t.Errorf("released: got err %v, want the caller's", evs[1].Err)
		}
	})
}

// TestEventsWait: a duplicate waits for the owner, then replays its answer;
// one that waits past its bound gets in progress. On synctest's clock.
func TestEventsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var ev events
		s := memstore.New()
		lease, _, err := idem.Claim(ctx, s, "k", idem.WithLease(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(100 * time.Millisecond)
			lease.Complete(ctx, []byte(`"first"`))
		}()
		if _, err := idem.Do(ctx, s, "k", ok, idem.WithEvents(ev.add), idem.WithWait(time.Second)); err != nil {
			t.Fatal(err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", waited, replayed)
		// The owner finishes at 100ms; the waiter sees it at its next poll
		// (a jittered backoff), well inside its second.
		if d := evs[0].Duration; d < 100*time.Millisecond || d >= time.Second {
			t.Errorf("waited %v, want from the owner's 100ms to under the second", d)
		}

		if _, _, err := idem.Claim(ctx, s, "k2", idem.WithLease(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := idem.Do(ctx, s, "k2", ok, idem.WithEvents(ev.add), idem.WithWait(time.Second)); !errors.Is(err, idem.ErrInProgress) {
			t.Fatalf("got %v, want ErrInProgress", err)
		}
		evs = ev.take()
		wantEvents(t, evs, "Do", "k2", waited, inProgress)
		if d := evs[0].Duration; d != time.Second {
			t.Errorf("waited %v, want the whole second", d)
		}
	})
}

// TestEventsHeartbeat: a 150ms lease is extended every 50ms while fn runs
// 120ms: two extensions, each with the new deadline. On synctest's clock.
func TestEventsHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		_, err := idem.Do(context.Background(), memstore.New(), "k", func(context.Context) (int, error) {
			time.Sleep(120 * time.Millisecond)
			return 1, nil
		}, idem.WithLease(150*time.Millisecond), idem.WithEvents(ev.add))
		if err != nil {
			t.Fatal(err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", claimed, extended, extended, completed)
		start := evs[0].Until.Add(-150 * time.Millisecond)
		for i, e := range evs[1:3] {
			if want := start.Add(time.Duration(i+1)*50*time.Millisecond + 150*time.Millisecond); !e.Until.Equal(want) {
				t.Errorf("extension %d: until %v, want %v", i+1, e.Until, want)
			}
		}
		if d := evs[3].Duration; d != 120*time.Millisecond {
			t.Errorf("completed: held %v, want fn's 120ms", d)
		}
	})
}

// TestEventsLeaseLost: the key is taken over while fn runs; the owner's
// heartbeat finds out, and the loss is reported once, though fn's failure
// then finds it lost again. The heir's events are its own. On synctest's
// clock.
func TestEventsLeaseLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var owner, heir events
		s := memstore.New()
		started := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			_, err := idem.Do(ctx, s, "k", func(ctx context.Context) (int, error) {
				close(started)
				<-ctx.Done()
				return 0, ctx.Err()
			}, idem.WithLease(time.Minute), idem.WithHeartbeat(20*time.Millisecond), idem.WithEvents(owner.add))
			done <- err
		}()
		<-started
		future := func() time.Time { return time.Now().Add(time.Hour) }
		if _, err := idem.Do(ctx, s, "k", ok, idem.WithClock(future), idem.WithEvents(heir.add)); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, idem.ErrLeaseLost) {
			t.Fatalf("owner: got %v, want ErrLeaseLost", err)
		}
		evs := owner.take()
		wantEvents(t, evs, "Do", "k", claimed, leaseLost)
		if !errors.Is(evs[1].Err, idem.ErrLeaseLost) {
			t.Errorf("lease lost: got err %v", evs[1].Err)
		}
		wantEvents(t, heir.take(), "Do", "k", takeover, completed)
	})
}

// TestEventsUnreachable: the store is out of reach for the whole lease;
// the heartbeat gives the lease up as lost. On synctest's clock.
func TestEventsUnreachable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		s := idemtest.NewFaulty(memstore.New())
		_, err := idem.Do(context.Background(), s, "k", func(ctx context.Context) (int, error) {
			s.On("CompareAndSwap", idemtest.Fail(errors.New("injected: store unreachable")))
			<-ctx.Done()
			return 0, ctx.Err()
		}, idem.WithLease(200*time.Millisecond), idem.WithHeartbeat(50*time.Millisecond), idem.WithEvents(ev.add))
		if !errors.Is(err, idem.ErrLeaseLost) {
			t.Fatalf("got %v, want ErrLeaseLost", err)
		}
		evs := ev.take()
		wantEvents(t, evs, "Do", "k", claimed, leaseLost)
		if d := evs[1].Duration; d != 200*time.Millisecond {
			t.Errorf("lease lost after %v, want the lease, 200ms", d)
		}
	})
}

// TestEventsUnknownOutcome: lost responses that Do settles, on the claim
// and on the completion, and one it cannot (every completion is lost
// before it is sent). On synctest's clock, for the resends' backoff.
func TestEventsUnknownOutcome(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   string
		hook idemtest.Hook
		want []event.Kind
	}{
		{"claim settled", "PutIfAbsent", idemtest.Times(1, idemtest.Lose), []event.Kind{settled, claimed, completed}},
		{"completion settled", "CompareAndSwap", idemtest.Times(1, idemtest.Lose), []event.Kind{claimed, settled, completed}},
		{"completion unsettled", "CompareAndSwap", idemtest.Drop, []event.Kind{claimed, unsettled}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var ev events
				s := idemtest.NewFaulty(memstore.New())
				s.On(tc.op, tc.hook)
				_, err := idem.Do(context.Background(), s, "k", ok, idem.WithEvents(ev.add))
				if lost := errors.Is(err, idem.ErrUnknownOutcome); lost != (tc.want[len(tc.want)-1] == unsettled) || (!lost && err != nil) {
					t.Fatalf("got %v", err)
				}
				evs := ev.take()
				wantEvents(t, evs, "Do", "k", tc.want...)
				for _, e := range evs {
					if (e.Kind == settled || e.Kind == unsettled) && !errors.Is(e.Err, idem.ErrUnknownOutcome) {
						t.Errorf("%v: got err %v, want the lost response", e.Kind, e.Err)
					}
				}
			})
		})
	}
}

// TestEventsEntryPoints: Once and Claim name themselves; a Lease from Claim
// reports its own writes.
func TestEventsEntryPoints(t *testing.T) {
	ctx := context.Background()
	var ev events
	s := memstore.New()
	idem.Once(ctx, s, "msg", func(context.Context) error { return nil }, idem.WithEvents(ev.add))
	idem.Once(ctx, s, "msg", func(context.Context) error { return nil }, idem.WithEvents(ev.add))
	wantEvents(t, ev.take(), "Once", "msg", claimed, completed, replayed)

	lease, _, err := idem.Claim(ctx, s, "c", idem.WithEvents(ev.add), idem.WithLease(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := lease.Extend(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(ctx); err != nil { // a retry: no second event
		t.Fatal(err)
	}
	if err := lease.Complete(ctx, []byte(`1`)); !errors.Is(err, idem.ErrLeaseLost) { // misuse: no event either
		t.Fatalf("got %v, want ErrLeaseLost", err)
	}
	wantEvents(t, ev.take(), "Claim", "c", claimed, extended, released)
}

// TestEventsCounter: Add reports an applied operation, a duplicate, a lost
// race and a lost response it settles.
func TestEventsCounter(t *testing.T) {
	ctx := context.Background()
	var ev events
	f := idemtest.NewFaulty(memstore.New())
	c := idem.Counter{Store: f, Key: "c", Events: ev.add}
	c.Add(ctx, "op-1", 1)
	c.Add(ctx, "op-1", 1)
	wantEvents(t, ev.take(), "Add", "c", completed, replayed)

	f.On("CompareAndSwap", idemtest.Times(1, idemtest.Lose))
	if _, applied, err := c.Add(ctx, "op-2", 1); err != nil || !applied {
		t.Fatalf("got applied %v, %v", applied, err)
	}
	wantEvents(t, ev.take(), "Add", "c", settled, completed)

	// A competitor's operation lands between Add's read and its write.
	f.On("CompareAndSwap", idemtest.Times(1, func(ctx context.Context, call idemtest.Call, send func() error) error {
		if _, _, err := (idem.Counter{Store: f.Store, Key: "c"}).Add(ctx, "rival", 1); err != nil {
			return err
		}
		return send()
	}))
	c.Add(ctx, "op-3", 1)
	evs := ev.take()
	wantEvents(t, evs, "Add", "c", conflictEvent, completed)
	if evs[0].Attempt != 1 || evs[1].Attempt != 2 {
		t.Errorf("got attempts %d, %d; want 1, 2", evs[0].Attempt, evs[1].Attempt)
	}
}

// TestEventsUpdate: Update reports a lost race and its write.
func TestEventsUpdate(t *testing.T) {
	ctx := context.Background()
	var ev events
	s := memstore.New()
	s.PutIfAbsent(ctx, "u", []byte("0"), 0)
	first := true
	_, err := idem.Update(ctx, s, "u", func(v []byte, exists bool) ([]byte, error) {
		if first {
			first = false
			cur, _ := s.Get(ctx, "u")
			s.CompareAndSwap(ctx, "u", cur.Version, []byte("rival"), 0)
		}
		return append(v, '+'), nil
	}, idem.WithUpdateEvents(ev.add))
	if err != nil {
		t.Fatal(err)
	}
	wantEvents(t, ev.take(), "Update", "u", conflictEvent, completed)
}

// TestEventsCostNothingUnset: without WithEvents, Do allocates no more
// than it must (18 allocations for a first call, the key's included, and
// 12 for a replay from the store, since the lazy write contexts and
// heartbeat; 32 and 16 before; TestCacheAllocations covers a cached
// replay), and a hook that records nothing adds at most one (the variadic
// options slice).
func TestEventsCostNothingUnset(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	ctx := context.Background()
	s := memstore.New()
	i := 0
	first := testing.AllocsPerRun(200, func() {
		i++
		idem.Do(ctx, s, strconv.Itoa(i), ok)
	})
	replay := testing.AllocsPerRun(200, func() { idem.Do(ctx, s, "1", ok) })
	nop := idem.WithEvents(func(context.Context, event.Event) {})
	firstHooked := testing.AllocsPerRun(200, func() {
		i++
		idem.Do(ctx, s, strconv.Itoa(i), ok, nop)
	})
	t.Logf("allocations: first %.0f (with a hook %.0f), replay %.0f", first, firstHooked, replay)
	if first > 18 || replay > 12 {
		t.Errorf("got %.0f allocations for a first call, %.0f for a replay; want at most 18 and 12", first, replay)
	}
	if firstHooked > first+1 {
		t.Errorf("a hook that keeps nothing: %.0f allocations, want at most %.0f", firstHooked, first+1)
	}
}

// TestLogEvents: one line per event, the key in it, the level by severity.
func TestLogEvents(t *testing.T) {
	var buf bytes.Buffer
	log := event.Log(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx := context.Background()
	s := memstore.New()
	idem.Do(ctx, s, "order-7", ok, idem.WithEvents(log))
	idem.Do(ctx, s, "order-7", ok, idem.WithEvents(log), idem.WithFingerprint([]byte("other")))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`level=DEBUG msg="idem: claimed" op=Do key=order-7 attempt=1 until=`,
		`level=DEBUG msg="idem: completed" op=Do key=order-7 attempt=1 duration=`,
		`level=WARN msg="idem: mismatch" op=Do key=order-7 duration=`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: got %s\nwant it to contain %s", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[2], `err="idem: `) {
		t.Errorf("mismatch line has no err: %s", lines[2])
	}

	// Levels: an Info handler drops the routine and keeps the rest.
	buf.Reset()
	log = event.Log(slog.New(slog.NewTextHandler(&buf, nil)))
	for k := claimed; k <= conflictEvent; k++ {
		log(ctx, event.Event{Kind: k, Op: "Do", Key: "k"})
	}
	got := buf.String()
	for k := claimed; k <= conflictEvent; k++ {
		logged := strings.Contains(got, fmt.Sprintf("msg=\"idem: %v\"", k))
		routine := k == claimed || k == replayed || k == extended || k == completed
		if logged == routine {
			t.Errorf("%v: logged %v at Info", k, logged)
		}
	}
	for _, k := range []event.Kind{mismatch, leaseLost, unsettled, notStored} {
		if !strings.Contains(got, fmt.Sprintf("level=WARN msg=\"idem: %v\"", k)) {
			t.Errorf("%v: not a warning:\n%s", k, got)
		}
	}
}

func TestEventKindNames(t *testing.T) {
	seen := map[string]bool{}
	for k := claimed; k <= conflictEvent; k++ {
		s := k.String()
		if s == "unknown" || seen[s] {
			t.Errorf("kind %d: name %q", k, s)
		}
		seen[s] = true
	}
	if s := event.Kind(0).String(); s != "unknown" {
		t.Errorf("kind 0: got %q", s)
	}
}
