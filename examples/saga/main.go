// Command saga books trips (a flight, a hotel, a car) as sagas with
// saga.Run: a supplier that says "sold out" makes the saga release what
// it reserved, in reverse order; a process that dies mid-saga or
// mid-compensation is replaced by a re-run that neither repeats a completed
// step nor undoes anything twice. It prints what happened, checks the
// suppliers' stock against the outcomes, and exits 1 if a promise was
// broken.
//
//	go run ./examples/saga                  # on the embedded store
//	go run ./examples/saga -store=dynamodb  # or cassandra; see examples/internal/backend
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/idemkit/idemkit/examples/internal/backend"
	"github.com/idemkit/idemkit/examples/internal/report"
)

func main() {
	kind := backend.Flag()
	lease := flag.Duration("lease", time.Second, "how long a crashed run blocks its trip")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, closeStore := backend.MustOpen(ctx, "saga", *kind)
	defer closeStore()

	fmt.Printf("idemkit saga demo on the %s store\n\n", *kind)
	rep, err := Run(ctx, store, Config{Lease: *lease})
	report.Finish("saga", rep, err)
}
