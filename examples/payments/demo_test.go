package main

import (
	"context"
	"testing"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestDemo plays every scenario on the embedded store, with a few seeds,
// and requires every payment charged exactly once.
func TestDemo(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		rep, err := Run(context.Background(), memstore.New(), Config{Payments: 100, Seed: seed})
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
	}
}
