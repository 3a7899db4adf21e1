package saga_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/idem/saga"
)

// TestSagaBadOptions: bad input is rejected with ErrInvalid before
// anything is read or written, and the body never runs.
func TestSagaBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		noStore bool
		opts    []saga.Option
	}{
		{name: "empty ID", id: ""},
		{name: "nil store", id: "trip", noStore: true},
		{name: "nil option", id: "trip", opts: []saga.Option{nil}},
		{name: "zero retention", id: "trip", opts: []saga.Option{saga.WithRetention(0)}},
		{name: "negative retention", id: "trip", opts: []saga.Option{saga.WithRetention(-time.Hour)}},
		{name: "zero lease", id: "trip", opts: []saga.Option{saga.WithLease(0)}},
		{name: "negative wait", id: "trip", opts: []saga.Option{saga.WithWait(-time.Second)}},
		{name: "nil clock", id: "trip", opts: []saga.Option{saga.WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := idemtest.NewCounting(memstore.New())
			var s idem.Store = cs
			if tt.noStore {
				s = nil
			}
			err := saga.Run(context.Background(), s, tt.id, func(ctx context.Context, sg *saga.Saga) error {
				t.Error("the body ran")
				return nil
			}, tt.opts...)
			if !errors.Is(err, idem.ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
			if c := cs.Counts(); c.Total() != 0 {
				t.Errorf("store calls: got %+v, want none", c)
			}
		})
	}
}

// TestSagaKeyPrefix: every record of the saga (its outcome, its steps, the
// abort decision, the compensations) is under the prefix, and the same ID
// under another prefix is another saga.
func TestSagaKeyPrefix(t *testing.T) {
	s := memstore.New()
	tr := newTrip()
	tr.failOn("car", 1, idem.Permanent(errSoldOut))
	if err, _ := runSaga(s, "trip", tr, saga.WithKeyPrefix("travel/")); !errors.Is(err, saga.ErrAborted) {
		t.Fatalf("got %v, want ErrAborted", err)
	}
	wantLog(t, tr, "flight", "hotel", "undo hotel", "undo flight")
	for _, key := range []string{
		idem.JoinKey("trip", "saga"),
		idem.JoinKey("trip", "step", "flight"),
		idem.JoinKey("trip", "step", "car"),
		idem.JoinKey("trip", "abort"),
		idem.JoinKey("trip", "compensate", "flight"),
	} {
		if _, err := s.Get(context.Background(), "travel/"+key); err != nil {
			t.Errorf("record %q: got %v, want it stored", "travel/"+key, err)
		}
		if _, err := s.Get(context.Background(), key); !errors.Is(err, idem.ErrNotFound) {
			t.Errorf("record %q without the prefix: got %v, want ErrNotFound", key, err)
		}
	}

	other := newTrip()
	if err, _ := runSaga(s, "trip", other, saga.WithKeyPrefix("other/")); err != nil {
		t.Fatalf("the same ID under another prefix: %v", err)
	}
	wantLog(t, other, "flight", "hotel", "car")
}

// TestSagaRetention: a finished saga is remembered for the retention, and
// runs afresh once its records have expired.
func TestSagaRetention(t *testing.T) {
	clk := &clock{t: time.Now()}
	s := memstore.New(memstore.WithClock(clk.now))
	tr := newTrip()
	opts := []saga.Option{saga.WithRetention(time.Hour), saga.WithClock(clk.now)}
	if err, _ := runSaga(s, "trip", tr, opts...); err != nil {
		t.Fatal(err)
	}
	clk.advance(59 * time.Minute)
	if err, _ := runSaga(s, "trip", tr, opts...); err != nil {
		t.Fatal(err)
	}
	wantLog(t, tr, "flight", "hotel", "car")
	clk.advance(2 * time.Minute)
	if err, _ := runSaga(s, "trip", tr, opts...); err != nil {
		t.Fatal(err)
	}
	wantLog(t, tr, "flight", "hotel", "car", "flight", "hotel", "car")
}

// TestSagaLease: after a crash, the next run takes the saga and the cut
// step over once the lease set with WithLease has passed, not before.
func TestSagaLease(t *testing.T) {
	s := memstore.New()
	clk := &clock{t: time.Now()}
	tr := newTrip()
	tr.crash["hotel"] = 1
	opts := []saga.Option{saga.WithLease(10 * time.Second), saga.WithClock(clk.now)}
	if _, crashed := runSaga(s, "trip", tr, opts...); !crashed {
		t.Fatal("the saga did not crash")
	}
	clk.advance(9 * time.Second)
	if err, _ := runSaga(s, "trip", tr, opts...); !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("re-run within the lease: got %v, want ErrInProgress", err)
	}
	clk.advance(2 * time.Second)
	if err, crashed := runSaga(s, "trip", tr, opts...); err != nil || crashed {
		t.Fatalf("re-run after the lease: %v (crashed %v)", err, crashed)
	}
	wantLog(t, tr, "flight", "hotel", "car")
	if _, calls := tr.snapshot(); calls["hotel"] != 2 || calls["flight"] != 1 {
		t.Errorf("calls: got %v, want the flight once and the hotel twice", calls)
	}
}

// TestSagaWait: a concurrent Run waits up to WithWait for the run in
// flight, then gets its outcome without running its body; a shorter wait
// gives up with ErrInProgress.
func TestSagaWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := memstore.New()
		release := make(chan struct{})
		first := make(chan error)
		go func() {
			first <- saga.Run(ctx, s, "trip", func(ctx context.Context, sg *saga.Saga) error {
				_, err := saga.Step(ctx, sg, "slow", func(ctx context.Context) (int, error) {
					<-release
					return 1, nil
				}, nil)
				return err
			})
		}()
		synctest.Wait() // the first run is inside its step
		idle := func(ctx context.Context, sg *saga.Saga) error {
			t.Error("a waiting run ran its body")
			return nil
		}
		short, long := make(chan error), make(chan error)
		go func() { short <- saga.Run(ctx, s, "trip", idle, saga.WithWait(5*time.Second)) }()
		go func() { long <- saga.Run(ctx, s, "trip", idle, saga.WithWait(time.Minute)) }()
		time.Sleep(10 * time.Second)
		if err := <-short; !errors.Is(err, idem.ErrInProgress) {
			t.Errorf("a run waiting 5s for a 10s run: got %v, want ErrInProgress", err)
		}
		close(release)
		if err := <-first; err != nil {
			t.Fatalf("first run: %v", err)
		}
		if err := <-long; err != nil {
			t.Errorf("a run waiting 1m for a 10s run: got %v, want the first run's nil", err)
		}
	})
}

// TestSagaStepWaitsOutACrashedStep: a step claimed by a run that crashed
// can outlive the saga's own lease. The next run, which took the saga over,
// waits for that step's lease (steps wait at least a lease, whatever
// WithWait) and takes the step over, instead of failing with ErrInProgress.
func TestSagaStepWaitsOutACrashedStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memstore.New()
		tr := newTrip()
		tr.crash["hotel"] = 1
		body := func(ctx context.Context, sg *saga.Saga) error {
			for _, name := range []string{"flight", "hotel"} {
				_, err := saga.Step(ctx, sg, name, func(ctx context.Context) (int, error) {
					if name == "flight" {
						time.Sleep(25 * time.Second) // the saga's heartbeat extends its lease at 10s and 20s
					}
					return 0, tr.call(ctx, name)
				}, nil)
				if err != nil {
					return err
				}
			}
			return nil
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			saga.Run(context.Background(), s, "trip", body) // crashes in the hotel at 25s
		}()
		<-done
		// The saga's lease passes at 50s, the hotel's (claimed at 25s) at 55s.
		time.Sleep(27 * time.Second)
		start := time.Now()
		if err := saga.Run(context.Background(), s, "trip", body); err != nil {
			t.Fatalf("re-run at 52s: %v", err)
		}
		if waited := time.Since(start); waited < 3*time.Second {
			t.Errorf("the re-run returned after %v, before the hotel's lease passed (3s)", waited)
		}
		wantLog(t, tr, "flight", "hotel")
		if !slices.Equal(tr.takeovers, []string{"hotel"}) {
			t.Errorf("takeovers: got %q, want [hotel]", tr.takeovers)
		}
	})
}
