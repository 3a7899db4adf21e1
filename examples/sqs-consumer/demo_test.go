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

// TestDemo plays every scenario on a real queue of each SQS server (moto),
// with the keys in each store, and requires every promise kept. It needs a
// server, so it is not in examples_test.go's list, which runs every example
// on the embedded store alone too.
func TestDemo(t *testing.T) {
	for _, srv := range testenv.SQSServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, s idem.Store) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				rep, err := Run(ctx, s, srv.Client(t), Config{})
				if err != nil {
					t.Fatal(err)
				}
				out := report.Text(rep)
				if !rep.OK() {
					t.Fatalf("\n%s", out)
				}
				if rep.Sent != 8 || rep.Skipped < 3 || len(rep.Scenarios) != 4 {
					t.Errorf("sent %d, skipped %d, scenarios %d: the faults did not happen as planned\n%s", rep.Sent, rep.Skipped, len(rep.Scenarios), out)
				}
				t.Logf("\n%s", out)
			})
		})
	}
}
