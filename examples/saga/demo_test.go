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
		// A 3 s lease: the heartbeat's CompareAndSwap must land within a
		// lease even on a loaded two-core machine where moto answers one
		// request at a time (a 1 s lease lost its heartbeat there).
		rep, err := Run(ctx, s, Config{Lease: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out := report.Text(rep)
		if !rep.OK() {
			t.Fatalf("\n%s", out)
		}
		if len(rep.Scenarios) != 8 || rep.Absorbed != 1 {
			t.Errorf("scenarios %d, absorbed %d: the faults did not happen as planned\n%s", len(rep.Scenarios), rep.Absorbed, out)
		}
		t.Logf("\n%s", out)
	})
}
