package main

import (
	"context"
	"testing"
	"time"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/storetest"
)

// TestDemo plays every scenario on the embedded store and on each real
// server, and requires every promise kept. On the embedded store the
// leases it waits out pass at once on synctest's clock.
func TestDemo(t *testing.T) {
	storetest.EachOnFakeClock(t, func(t *testing.T, s idem.Store) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rep, err := Run(ctx, s, Config{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out := report.Text(rep)
		if !rep.OK() {
			t.Fatalf("\n%s", out)
		}
		if rep.Deduped != 1 || len(rep.Scenarios) != 10 {
			t.Errorf("deduped %d, scenarios %d: the faults did not happen as planned\n%s", rep.Deduped, len(rep.Scenarios), out)
		}
		t.Logf("\n%s", out)
	})
}
