package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/saga"
)

// Config shapes a demo run.
type Config struct {
	// Lease is how long a crashed run blocks its trip (default 1s); the
	// crash scenarios wait for it to pass.
	Lease time.Duration
	// Duplicates is how many copies of one trip run at once in the last
	// scenario (default 8).
	Duplicates int
}

// Report is what a run did and whether it kept every promise.
type Report struct {
	Scenarios report.Scenarios
	// Calls is how many supplier calls were made, Absorbed how many of them
	// found their work already done (the one re-run of a step or an undo cut
	// short by a crash).
	Calls, Absorbed int
	// Stock is who holds each resource at the end.
	Stock map[string][]string
}

// Scenario is one named situation and what came of it.
type Scenario = report.Scenario

// OK reports whether every scenario kept its promises.
func (r *Report) OK() bool { return r.Scenarios.OK() }

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	r.Scenarios.Print(w)
	fmt.Fprintf(w, "\nsupplier calls            %4d\n", r.Calls)
	fmt.Fprintf(w, "  absorbed by the supplier %3d  (a step or an undo re-run after a crash cut it short)\n", r.Absorbed)
	fmt.Fprintln(w, "stock at the end:")
	names := make([]string, 0, len(r.Stock))
	for k := range r.Stock {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "  %-16s held by %v\n", k, r.Stock[k])
	}
	if r.OK() {
		fmt.Fprintln(w, "\nevery trip was booked or undone exactly once")
	} else {
		fmt.Fprintln(w, "\nFAILED: see the scenarios marked FAIL above")
	}
}

// Run plays every scenario against store.
func Run(ctx context.Context, store idem.Store, cfg Config) (*Report, error) {
	d, err := newDemo(ctx, store, cfg)
	if err != nil {
		return nil, err
	}
	d.booked()
	d.carSoldOut()
	d.crashMidSaga()
	d.transientFailure()
	d.crashMidCompensation()
	d.everySagaAgain()
	d.concurrentDuplicates()
	if err := d.stockMatches(); err != nil {
		return nil, err
	}
	d.rep.Calls = d.rep.calls(d.sup)
	d.sup.mu.Lock()
	d.rep.Absorbed = d.sup.absorbed
	d.sup.mu.Unlock()
	return d.rep, nil
}

// demo is what the scenes of one run share: the suppliers, the agency,
// the trips booked so far and the report they fill.
type demo struct {
	ctx   context.Context
	cfg   Config
	sup   *Suppliers
	ag    *Agency
	rep   *Report
	trips map[string]Trip
}

// newDemo stocks the suppliers on store and opens the agency.
func newDemo(ctx context.Context, store idem.Store, cfg Config) (*demo, error) {
	if cfg.Lease <= 0 {
		cfg.Lease = time.Second
	}
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = 8
	}
	runID := rand.Text()[:13] // keys of two runs on one server never meet
	sup := newSuppliers(store, runID+"/stock/")
	ag := &Agency{Store: store, Suppliers: sup, Prefix: runID + "/trips/", Lease: cfg.Lease}
	for res, capacity := range map[string]int{
		"flight/FL1": 10, "hotel/H1": 10, "car/C1": 1, "car/C2": 10,
	} {
		if err := sup.stock(ctx, res, capacity); err != nil {
			return nil, fmt.Errorf("stocking %s: %w", res, err)
		}
	}
	return &demo{
		ctx: ctx, cfg: cfg, sup: sup, ag: ag,
		rep:   &Report{Stock: map[string][]string{}},
		trips: map[string]Trip{},
	}, nil
}

// trip is a new trip with the flight and hotel every trip takes, and car.
func (d *demo) trip(id, car string) Trip {
	t := Trip{ID: id, Flight: "FL1", Hotel: "H1", Car: car}
	d.trips[id] = t
	return t
}

func (d *demo) add(name, outcome string, failures ...string) {
	d.rep.Scenarios = append(d.rep.Scenarios, Scenario{Name: name, Outcome: outcome, Failures: failures})
}

// book runs a trip's saga on a goroutine of its own, which a supplier
// fault may end like a killed process (runtime.Goexit).
func (d *demo) book(t Trip) (err error, crashed bool) {
	done := make(chan struct{})
	crashed = true
	go func() {
		defer close(done)
		err = d.ag.Book(d.ctx, t)
		crashed = false
	}()
	<-done
	return err, crashed
}

// calls is how many times holder called op on res.
func (d *demo) calls(op, res, holder string) int {
	d.sup.mu.Lock()
	defer d.sup.mu.Unlock()
	return d.sup.calls[op+" "+res+" "+holder]
}

// afterLease waits for a crashed run's lease to pass.
func (d *demo) afterLease() { time.Sleep(d.cfg.Lease + 200*time.Millisecond) }

// want records a broken promise in failures unless cond holds.
func want(failures *[]string, cond bool, format string, args ...any) {
	if !cond {
		*failures = append(*failures, fmt.Sprintf(format, args...))
	}
}

// 1. Everything goes well.
func (d *demo) booked() {
	var f []string
	err, _ := d.book(d.trip("t1", "C1"))
	want(&f, err == nil, "booking failed: %v", err)
	d.add("booked", "t1: flight, hotel and car C1 reserved", f...)
}

// 2. The only car is gone: the flight and hotel are released, in
// reverse order, once.
func (d *demo) carSoldOut() {
	calls := d.calls
	var f []string
	err, _ := d.book(d.trip("t2", "C1"))
	want(&f, errors.Is(err, saga.ErrAborted), "got %v, want the saga aborted", err)
	want(&f, calls("release", "hotel/H1", "t2") == 1 && calls("release", "flight/FL1", "t2") == 1,
		"releases: hotel %d, flight %d; want 1 each", calls("release", "hotel/H1", "t2"), calls("release", "flight/FL1", "t2"))
	d.add("car sold out: compensated", fmt.Sprintf("t2: %v", err), f...)
}

// 3. The process dies right after the hotel reserved the room, before
// the step was recorded. The next run takes over after the lease,
// skips the flight, repeats the hotel call (the hotel absorbs it) and
// books the car.
func (d *demo) crashMidSaga() {
	calls := d.calls
	var f []string
	t := d.trip("t3", "C2")
	d.sup.inject("reserve", "hotel/H1", "t3", crashAfter)
	_, crashed := d.book(t)
	want(&f, crashed, "the run did not crash")
	err, _ := d.book(t)
	want(&f, errors.Is(err, idem.ErrInProgress), "a re-run under the dead run's lease: got %v, want ErrInProgress", err)
	d.afterLease()
	err, crashed = d.book(t)
	want(&f, err == nil && !crashed, "re-run after the lease: %v (crashed %v)", err, crashed)
	want(&f, calls("reserve", "flight/FL1", "t3") == 1, "flight reserved %d times, want 1", calls("reserve", "flight/FL1", "t3"))
	want(&f, calls("reserve", "hotel/H1", "t3") == 2, "hotel called %d times, want 2 (one cut short)", calls("reserve", "hotel/H1", "t3"))
	d.add("crash mid-saga, re-run", "t3: re-run resumed at the hotel; booked", f...)
}

// 4. The car-rental API times out: nothing is undone; the retry
// resumes at the car.
func (d *demo) transientFailure() {
	calls := d.calls
	var f []string
	t := d.trip("t4", "C2")
	d.sup.inject("reserve", "car/C2", "t4", timeout)
	err, _ := d.book(t)
	want(&f, errors.Is(err, errTimeout) && !errors.Is(err, saga.ErrAborted), "got %v, want the timeout, not an abort", err)
	err, _ = d.book(t)
	want(&f, err == nil, "retry: %v", err)
	want(&f, calls("reserve", "flight/FL1", "t4") == 1 && calls("reserve", "hotel/H1", "t4") == 1,
		"flight %d, hotel %d calls; want 1 each", calls("reserve", "flight/FL1", "t4"), calls("reserve", "hotel/H1", "t4"))
	d.add("transient failure, retried", "t4: resumed at the car; booked", f...)
}

// 5. The car is sold out and the process dies while releasing the
// hotel. The next run reserves nothing, releases the hotel (again: it
// was cut short) and the flight.
func (d *demo) crashMidCompensation() {
	calls := d.calls
	var f []string
	t := d.trip("t5", "C1")
	d.sup.inject("release", "hotel/H1", "t5", crashBefore)
	_, crashed := d.book(t)
	want(&f, crashed, "the run did not crash")
	d.afterLease()
	err, _ := d.book(t)
	want(&f, errors.Is(err, saga.ErrAborted), "re-run: got %v, want the saga aborted", err)
	want(&f, calls("reserve", "car/C1", "t5") == 1 && calls("reserve", "hotel/H1", "t5") == 1,
		"re-run reserved again: car %d, hotel %d calls", calls("reserve", "car/C1", "t5"), calls("reserve", "hotel/H1", "t5"))
	want(&f, calls("release", "hotel/H1", "t5") == 2 && calls("release", "flight/FL1", "t5") == 1,
		"releases: hotel %d (want 2, one cut short), flight %d (want 1)", calls("release", "hotel/H1", "t5"), calls("release", "flight/FL1", "t5"))
	d.add("crash mid-compensation, re-run", "t5: compensation finished by the re-run", f...)
}

// 6. Every saga is run again (a redelivered message, a retried job):
// the same outcomes, and not one supplier call.
func (d *demo) everySagaAgain() {
	var f []string
	before := d.rep.calls(d.sup)
	for _, id := range []string{"t1", "t2", "t3", "t4", "t5"} {
		err, _ := d.book(d.trips[id])
		aborted := id == "t2" || id == "t5"
		want(&f, (err == nil) != aborted && (!aborted || errors.Is(err, saga.ErrAborted)), "%s: got %v", id, err)
	}
	want(&f, d.rep.calls(d.sup) == before, "re-runs made %d supplier calls, want 0", d.rep.calls(d.sup)-before)
	d.add("every saga run again", "same outcomes, no supplier call", f...)
}

// 7. The same trip is started by many workers at once: one runs it,
// the others wait for its outcome.
func (d *demo) concurrentDuplicates() {
	var f []string
	dup := *d.ag
	dup.Wait = 30 * time.Second
	t := d.trip("t6", "C2")
	errs := make([]error, d.cfg.Duplicates)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = dup.Book(d.ctx, t) })
	}
	wg.Wait()
	for i, err := range errs {
		want(&f, err == nil, "worker %d: %v", i, err)
	}
	want(&f, d.calls("reserve", "car/C2", "t6") == 1, "car reserved %d times, want 1", d.calls("reserve", "car/C2", "t6"))
	d.add(fmt.Sprintf("%d concurrent duplicates", d.cfg.Duplicates), "t6: booked once", f...)
}

// The invariants, read back from the stock: booked trips hold exactly
// their three resources, aborted trips hold nothing, nothing oversold.
func (d *demo) stockMatches() error {
	var f []string
	booked := map[string]bool{"t1": true, "t3": true, "t4": true, "t6": true}
	for _, res := range []string{"flight/FL1", "hotel/H1", "car/C1", "car/C2"} {
		st, err := d.sup.holders(d.ctx, res)
		if err != nil {
			return err
		}
		holders := slices.Sorted(slices.Values(st.Holders))
		d.rep.Stock[res] = holders
		var wantHolders []string
		for id, t := range d.trips {
			if booked[id] && (res == "flight/"+t.Flight || res == "hotel/"+t.Hotel || res == "car/"+t.Car) {
				wantHolders = append(wantHolders, id)
			}
		}
		slices.Sort(wantHolders)
		want(&f, slices.Equal(holders, wantHolders), "%s held by %v, want %v", res, holders, wantHolders)
		want(&f, len(st.Holders) <= st.Capacity, "%s oversold: %d holders, capacity %d", res, len(st.Holders), st.Capacity)
		want(&f, len(slices.Compact(slices.Clone(holders))) == len(holders), "%s holds a trip twice: %v", res, holders)
	}
	d.add("stock matches the outcomes", "booked trips hold their resources; aborted ones nothing", f...)
	return nil
}

func (r *Report) calls(s *Suppliers) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}
