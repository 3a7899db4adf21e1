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
// server, and requires every promise kept.
func TestDemo(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s idem.Store) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rep, err := Run(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		out := report.Text(rep)
		if !rep.OK() {
			t.Fatalf("\n%s", out)
		}
		if rep.Orders != 7 || rep.Replays < 12 {
			t.Errorf("orders %d, replays %d: the scenarios did not happen as planned\n%s", rep.Orders, rep.Replays, out)
		}
		t.Logf("\n%s", out)
	})
}
