package main

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/internal/storetest"
)

// TestDemo plays every scenario on the embedded store, with a few seeds of
// the fault injector, and on each real server with one, and requires every
// payment charged exactly once. On memory the clients' back-offs and the
// leases of crashed runs pass at once on synctest's clock (storetest.EachOnFakeClock).
func TestDemo(t *testing.T) {
	storetest.EachOnFakeClock(t, func(t *testing.T, s idem.Store) {
		seeds := []uint64{1}
		if _, mem := s.(*memstore.Store); mem {
			seeds = []uint64{1, 2, 3}
		}
		for _, seed := range seeds {
			rep, err := Run(context.Background(), s, Config{Payments: 100, Seed: seed})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("seed %d:\n%s", seed, report.Text(rep))
			}
			if rep.Totals.Crashes == 0 || rep.Totals.Replays == 0 || rep.Totals.Rejected != 1 {
				t.Errorf("seed %d: the faults did not happen (crashes %d, replays %d, rejected %d)",
					seed, rep.Totals.Crashes, rep.Totals.Replays, rep.Totals.Rejected)
			}
			t.Logf("seed %d:\n%s", seed, report.Text(rep))
		}
	})
}

// TestMetrics: with -metrics the run's events reach OpenTelemetry through
// idemotel, and what it prints counts them: a claim per payment charged,
// the replays, the takeovers after crashes, the one mismatch.
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := newMetrics("memory")
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Run(context.Background(), memstore.New(), Config{Payments: 50, Seed: 1, Events: m.events()})
		if err != nil || !rep.OK() {
			t.Fatalf("the run: %v\n%s", err, report.Text(rep))
		}
		var out strings.Builder
		if err := m.print(context.Background(), &out); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"idem.events    claimed Do ok", "idem.events    replayed Do ok", "idem.events    takeover Do ok",
			"idem.events    mismatch Do mismatch", "idem.duration  completed Do ok"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("the metrics lack %q:\n%s", want, out.String())
			}
		}
	})
}
