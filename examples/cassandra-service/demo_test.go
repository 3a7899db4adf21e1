package main

import (
	"context"
	"strings"
	"testing"
	"time"

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
		var out strings.Builder
		rep.Print(&out)
		if !rep.OK() {
			t.Fatalf("\n%s", out.String())
		}
		if rep.Orders != 7 || rep.Replays < 12 {
			t.Errorf("orders %d, replays %d: the scenarios did not happen as planned\n%s", rep.Orders, rep.Replays, out.String())
		}
		t.Logf("\n%s", out.String())
	})
}
