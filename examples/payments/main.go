// Command payments is a small payment service on idemkit, hammered by a
// flaky client: lost requests, lost responses, a server crash after charging
// but before answering, concurrent duplicates, a reused key with a different
// amount, card declines and card-network outages. It prints what happened
// and checks that every payment was charged exactly once; it exits 1 if not.
//
//	go run ./examples/payments                  # on the embedded store
//	go run ./examples/payments -store=dynamodb  # or cassandra; see examples/internal/backend
//	go run ./examples/payments -metrics         # and print the run's OpenTelemetry metrics
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/idemkit/idemkit/examples/internal/backend"
	"github.com/idemkit/idemkit/examples/internal/report"
)

func main() {
	kind := backend.Flag()
	payments := flag.Int("payments", 200, "payments in the storm scenario")
	seed := flag.Uint64("seed", 1, "seed for the fault injector")
	showMetrics := flag.Bool("metrics", false, "print the OpenTelemetry metrics of the run (idem/idemotel)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, closeStore := backend.MustOpen(ctx, "payments", *kind)
	defer closeStore()

	fmt.Printf("idemkit payments demo on the %s store\n\n", *kind)
	cfg := Config{Payments: *payments, Seed: *seed}
	var m *metrics
	if *showMetrics {
		var err error
		if m, err = newMetrics(*kind); err != nil {
			fmt.Fprintln(os.Stderr, "payments:", err)
			os.Exit(2)
		}
		cfg.Events = m.events()
	}
	rep, err := Run(ctx, store, cfg)
	if m != nil {
		if merr := m.print(ctx, os.Stdout); merr != nil {
			fmt.Fprintln(os.Stderr, "payments: metrics:", merr)
		}
	}
	report.Finish("payments", rep, err)
}
