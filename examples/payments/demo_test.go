package main

import (
	"context"
	"testing"

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
