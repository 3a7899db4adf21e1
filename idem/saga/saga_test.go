package saga_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/idem/saga"
)

var errSoldOut = errors.New("sold out")

// trip is a three-step booking saga whose steps and compensations can be
// told to fail or crash on a given call.
type trip struct {
	steps []string

	mu        sync.Mutex
	log       []string       // what really happened, in order
	calls     map[string]int // calls per action ("flight") and compensation ("undo flight")
	fail      map[string]map[int]error
	crash     map[string]int // name -> the call that crashes (runtime.Goexit)
	takeovers []string
}

func newTrip() *trip {
	return &trip{steps: []string{"flight", "hotel", "car"}, calls: map[string]int{}, fail: map[string]map[int]error{}, crash: map[string]int{}}
}

// failOn makes the nth call of name return err.
func (tr *trip) failOn(name string, n int, err error) {
	if tr.fail[name] == nil {
		tr.fail[name] = map[int]error{}
	}
	tr.fail[name][n] = err
}

func (tr *trip) call(ctx context.Context, name string) error {
	tr.mu.Lock()
	tr.calls[name]++
	n := tr.calls[name]
	crash := tr.crash[name] == n
	err := tr.fail[name][n]
	if l, ok := idem.LeaseFrom(ctx); ok && l.Attempt() > 1 {
		tr.takeovers = append(tr.takeovers, name)
	}
	if !crash && err == nil {
		tr.log = append(tr.log, name)
	}
	tr.mu.Unlock()
	if crash {
		runtime.Goexit() // the process dies here: no defer of idem's runs to completion
	}
	return err
}

func (tr *trip) body(ctx context.Context, sg *saga.Saga) error {
	for _, name := range tr.steps {
		ref, err := saga.Step(ctx, sg, name, func(ctx context.Context) (string, error) {
			if err := tr.call(ctx, name); err != nil {
				return "", err
			}
			return "ref-" + name, nil
		}, func(ctx context.Context, ref string) error {
			if ref != "ref-"+name {
				return fmt.Errorf("compensation of %s got result %q", name, ref)
			}
			return tr.call(ctx, "undo "+name)
		})
		if err != nil {
			return err
		}
		_ = ref
	}
	return nil
}

func (tr *trip) snapshot() ([]string, map[string]int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.log), maps(tr.calls)
}

func maps(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// clock is a settable clock for leases.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// runSaga runs the saga in a goroutine of its own, so that a step can
// crash it with runtime.Goexit.
func runSaga(s idem.Store, id string, tr *trip, opts ...saga.Option) (err error, crashed bool) {
	done := make(chan struct{})
	crashed = true
	go func() {
		defer close(done)
		err = saga.Run(context.Background(), s, id, tr.body, opts...)
		crashed = false
	}()
	<-done
	return err, crashed
}

func wantLog(t *testing.T, tr *trip, want ...string) {
	t.Helper()
	got, _ := tr.snapshot()
	if !slices.Equal(got, want) {
		t.Errorf("what happened: got %q, want %q", got, want)
	}
}

func TestSagaCompletes(t *testing.T) {
	cs := idemtest.NewCounting(memstore.New())
	tr := newTrip()
	if err, _ := runSaga(cs, "trip-1", tr); err != nil {
		t.Fatal(err)
	}
	wantLog(t, tr, "flight", "hotel", "car")
	if c := cs.Counts(); c.Writes() != 8 || c.Get != 1 {
		t.Errorf("a 3-step saga: %+v, want 8 writes (2 for the saga, 2 per step) and 1 read", c)
	}
	cs.Reset()
	for range 3 {
		if err, _ := runSaga(cs, "trip-1", tr); err != nil {
			t.Fatal(err)
		}
	}
	wantLog(t, tr, "flight", "hotel", "car")
	if c := cs.Counts(); c.Total() != 3 {
		t.Errorf("3 re-runs of a complete saga: %+v, want 1 write each", c)
	}
}

// TestSagaCrashMidStep: the process dies inside the third step's action.
// The re-run takes the saga over, skips the two completed steps and runs
// the third again, knowing it is a takeover.
func TestSagaCrashMidStep(t *testing.T) {
	s := memstore.New()
	clk := &clock{t: time.Now()}
	tr := newTrip()
	tr.crash["car"] = 1
	if _, crashed := runSaga(s, "trip", tr, saga.WithClock(clk.now)); !crashed {
		t.Fatal("the saga did not crash")
	}
	wantLog(t, tr, "flight", "hotel")

	// Before the dead run's lease passes, a re-run is refused.
	if err, _ := runSaga(s, "trip", tr, saga.WithClock(clk.now)); !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("re-run under the dead run's lease: got %v, want ErrInProgress", err)
	}
	clk.advance(time.Minute)
	if err, crashed := runSaga(s, "trip", tr, saga.WithClock(clk.now)); err != nil || crashed {
		t.Fatalf("re-run: %v (crashed %v)", err, crashed)
	}
	wantLog(t, tr, "flight", "hotel", "car")
	if _, calls := tr.snapshot(); calls["flight"] != 1 || calls["hotel"] != 1 || calls["car"] != 2 {
		t.Errorf("action calls: %v, want flight 1, hotel 1, car 2 (one cut short)", calls)
	}
	if !slices.Equal(tr.takeovers, []string{"car"}) {
		t.Errorf("takeovers reported to actions: %q, want [car]", tr.takeovers)
	}
}

// TestSagaCrashBetweenSteps: the process dies after the second step
// completed, before the third started: every action runs exactly once.
func TestSagaCrashBetweenSteps(t *testing.T) {
	s := memstore.New()
	clk := &clock{t: time.Now()}
	tr := newTrip()
	crash := true
	body := func(ctx context.Context, sg *saga.Saga) error {
		for _, name := range tr.steps {
			if name == "car" && crash {
				crash = false
				runtime.Goexit()
			}
			if _, err := saga.Step(ctx, sg, name, func(ctx context.Context) (int, error) { return 0, tr.call(ctx, name) }, nil); err != nil {
				return err
			}
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		saga.Run(context.Background(), s, "trip", body, saga.WithClock(clk.now))
	}()
	<-done
	clk.advance(time.Minute)
	if err := saga.Run(context.Background(), s, "trip", body, saga.WithClock(clk.now)); err != nil {
		t.Fatal(err)
	}
	wantLog(t, tr, "flight", "hotel", "car")
	if _, calls := tr.snapshot(); calls["flight"] != 1 || calls["hotel"] != 1 || calls["car"] != 1 {
		t.Errorf("action calls: %v, want each exactly once", calls)
	}
}

// TestSagaAbortCompensates: the third step fails for good; the first two
// are undone in reverse order, once, and re-runs change nothing.
func TestSagaAbortCompensates(t *testing.T) {
	cs := idemtest.NewCounting(memstore.New())
	tr := newTrip()
	tr.failOn("car", 1, &idem.PermanentError{Code: "sold-out", Err: errSoldOut})
	err, _ := runSaga(cs, "trip", tr)
	var ae *saga.AbortedError
	if !errors.As(err, &ae) || !errors.Is(err, saga.ErrAborted) || !errors.Is(err, errSoldOut) || ae.Replayed {
		t.Fatalf("got %v, want a fresh *AbortedError caused by errSoldOut", err)
	}
	wantLog(t, tr, "flight", "hotel", "undo hotel", "undo flight")

	for range 2 {
		err, _ := runSaga(cs, "trip", tr)
		if !errors.As(err, &ae) || !ae.Replayed || !strings.Contains(ae.Cause.Error(), "sold out") {
			t.Fatalf("re-run: got %v, want the replayed *AbortedError", err)
		}
	}
	wantLog(t, tr, "flight", "hotel", "undo hotel", "undo flight")
}

// TestSagaBodyAborts: the body itself decides to abort after its steps.
func TestSagaBodyAborts(t *testing.T) {
	s := memstore.New()
	tr := newTrip()
	body := func(ctx context.Context, sg *saga.Saga) error {
		if err := tr.body(ctx, sg); err != nil {
			return err
		}
		return idem.Permanent(errors.New("the customer cancelled"))
	}
	err := saga.Run(context.Background(), s, "trip", body)
	if !errors.Is(err, saga.ErrAborted) {
		t.Fatalf("got %v, want ErrAborted", err)
	}
	wantLog(t, tr, "flight", "hotel", "car", "undo car", "undo hotel", "undo flight")
}

// TestSagaCrashMidCompensation: the process dies while undoing the hotel.
// The re-run runs no action, skips the compensations already done, and
// undoes the hotel (again: it was cut short) and the flight.
func TestSagaCrashMidCompensation(t *testing.T) {
	s := memstore.New()
	clk := &clock{t: time.Now()}
	tr := newTrip()
	tr.steps = append(tr.steps, "train")
	tr.failOn("train", 1, idem.Permanent(errSoldOut))
	tr.crash["undo hotel"] = 1
	if _, crashed := runSaga(s, "trip", tr, saga.WithClock(clk.now)); !crashed {
		t.Fatal("the saga did not crash")
	}
	wantLog(t, tr, "flight", "hotel", "car", "undo car")

	clk.advance(time.Minute)
	err, crashed := runSaga(s, "trip", tr, saga.WithClock(clk.now))
	if !errors.Is(err, saga.ErrAborted) || crashed {
		t.Fatalf("re-run: got %v (crashed %v), want ErrAborted", err, crashed)
	}
	wantLog(t, tr, "flight", "hotel", "car", "undo car", "undo hotel", "undo flight")
	_, calls := tr.snapshot()
	want := map[string]int{"flight": 1, "hotel": 1, "car": 1, "train": 1, "undo car": 1, "undo hotel": 2, "undo flight": 1}
	for k, v := range want {
		if calls[k] != v {
			t.Errorf("calls of %q: got %d, want %d (all: %v)", k, calls[k], v, calls)
		}
	}
	if err, _ := runSaga(s, "trip", tr, saga.WithClock(clk.now)); !errors.Is(err, saga.ErrAborted) {
		t.Errorf("third run: got %v, want the stored ErrAborted", err)
	}
	if _, again := tr.snapshot(); again["undo flight"] != 1 || again["train"] != 1 {
		t.Errorf("third run ran something: %v", again)
	}
}

// TestSagaTransientFailureResumes: a step fails transiently; nothing is
// compensated, and the re-run resumes at that step.
func TestSagaTransientFailureResumes(t *testing.T) {
	s := memstore.New()
	tr := newTrip()
	timeout := errors.New("hotel API timed out")
	tr.failOn("hotel", 1, timeout)
	err, _ := runSaga(s, "trip", tr)
	if !errors.Is(err, timeout) || errors.Is(err, saga.ErrAborted) {
		t.Fatalf("got %v, want the transient error, not an abort", err)
	}
	wantLog(t, tr, "flight")
	if err, _ := runSaga(s, "trip", tr); err != nil {
		t.Fatal(err)
	}
	wantLog(t, tr, "flight", "hotel", "car")
}

// TestSagaCompensationFailureResumes: a compensation fails transiently;
// the re-run finishes compensating without undoing anything twice.
func TestSagaCompensationFailureResumes(t *testing.T) {
	s := memstore.New()
	tr := newTrip()
	tr.failOn("car", 1, idem.Permanent(errSoldOut))
	down := errors.New("airline API down")
	tr.failOn("undo flight", 1, down)
	err, _ := runSaga(s, "trip", tr)
	var ce *saga.CompensationError
	if !errors.As(err, &ce) || ce.Step != "flight" || !errors.Is(err, down) || errors.Is(err, saga.ErrAborted) {
		t.Fatalf("got %v, want a *CompensationError for the flight", err)
	}
	wantLog(t, tr, "flight", "hotel", "undo hotel")
	err, _ = runSaga(s, "trip", tr)
	if !errors.Is(err, saga.ErrAborted) {
		t.Fatalf("re-run: got %v, want ErrAborted", err)
	}
	wantLog(t, tr, "flight", "hotel", "undo hotel", "undo flight")
	if _, calls := tr.snapshot(); calls["undo hotel"] != 1 || calls["hotel"] != 1 {
		t.Errorf("calls: %v, want the hotel booked and undone once", calls)
	}
}

func TestSagaOneRunAtATime(t *testing.T) {
	s := memstore.New()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- saga.Run(context.Background(), s, "trip", func(ctx context.Context, sg *saga.Saga) error {
			_, err := saga.Step(ctx, sg, "wait", func(ctx context.Context) (int, error) {
				close(started)
				<-release
				return 1, nil
			}, nil)
			return err
		})
	}()
	<-started
	err := saga.Run(context.Background(), s, "trip", func(ctx context.Context, sg *saga.Saga) error {
		t.Error("a second run ran its body while the first was running")
		return nil
	})
	if !errors.Is(err, idem.ErrInProgress) {
		t.Errorf("concurrent run: got %v, want ErrInProgress", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSagaStepNames(t *testing.T) {
	s := memstore.New()
	err := saga.Run(context.Background(), s, "trip", func(ctx context.Context, sg *saga.Saga) error {
		if _, err := saga.Step(ctx, sg, "", func(ctx context.Context) (int, error) { return 0, nil }, nil); !errors.Is(err, idem.ErrInvalid) {
			t.Errorf("empty step name: got %v, want ErrInvalid", err)
		}
		saga.Step(ctx, sg, "a", func(ctx context.Context) (int, error) { return 0, nil }, nil)
		_, err := saga.Step(ctx, sg, "a", func(ctx context.Context) (int, error) { return 0, nil }, nil)
		return err
	})
	if !errors.Is(err, idem.ErrInvalid) {
		t.Errorf("a step name used twice: got %v, want ErrInvalid", err)
	}
}

// TestSagaParallelSteps: independent steps may run concurrently; they are
// compensated in reverse order of completion.
func TestSagaParallelSteps(t *testing.T) {
	// On synctest's fake clock the steps complete in the order of their
	// sleeps, exactly: a, b, c.
	synctest.Test(t, func(t *testing.T) {
		s := memstore.New()
		var mu sync.Mutex
		var undone []string
		err := saga.Run(context.Background(), s, "trip", func(ctx context.Context, sg *saga.Saga) error {
			var wg sync.WaitGroup
			for i, name := range []string{"a", "b", "c"} {
				wg.Go(func() {
					saga.Step(ctx, sg, name, func(ctx context.Context) (string, error) {
						time.Sleep(time.Duration(i) * 20 * time.Millisecond)
						return name, nil
					}, func(ctx context.Context, got string) error {
						mu.Lock()
						undone = append(undone, got)
						mu.Unlock()
						return nil
					})
				})
			}
			wg.Wait()
			return idem.Permanent(errors.New("changed my mind"))
		})
		if !errors.Is(err, saga.ErrAborted) {
			t.Fatal(err)
		}
		if !slices.Equal(undone, []string{"c", "b", "a"}) {
			t.Errorf("undone: %q, want [c b a]", undone)
		}
	})
}
