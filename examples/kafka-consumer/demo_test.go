package main

import (
	"context"
	"testing"
	"time"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/storetest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestDemo plays every scenario on a topic of the testenv broker, with the
// keys in each store, and requires every promise kept. It needs a broker,
// so it is not in examples_test.go's list, which runs every example on the
// embedded store alone too.
func TestDemo(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	storetest.Each(t, func(t *testing.T, s idem.Store) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rep, err := Run(ctx, s, brokers)
		if err != nil {
			t.Fatal(err)
		}
		out := report.Text(rep)
		if !rep.OK() {
			t.Fatalf("\n%s", out)
		}
		if rep.Produced != 17 || len(rep.DiedWith) == 0 || rep.Replayed < len(rep.DiedWith)+2 || len(rep.Scenarios) != 4 {
			t.Errorf("produced %d, died with %v, replayed %d, scenarios %d: the faults did not happen as planned\n%s",
				rep.Produced, rep.DiedWith, rep.Replayed, len(rep.Scenarios), out)
		}
		t.Logf("\n%s", out)
	})
}
