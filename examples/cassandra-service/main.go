// Command cassandra-service is an HTTP orders service whose orders and
// idempotency keys live in Cassandra (or any idem.Store): POST /orders and
// PATCH /orders/{id} require an Idempotency-Key and go through
// idemhttp.Middleware, scoped by the authenticated customer.
//
// By default it starts the service on loopback and plays a flaky client
// against it (lost responses, concurrent duplicates, a reused key, a server
// crash before answering, a dependency outage), checks that every order
// was created exactly once, and exits 1 if not:
//
//	go run ./examples/cassandra-service                   # on the embedded store
//	go run ./examples/cassandra-service -store=cassandra  # see examples/internal/backend
//
// With -listen it serves until interrupted:
//
//	go run ./examples/cassandra-service -store=cassandra -listen=127.0.0.1:8080
//	curl -i -X POST localhost:8080/orders -H 'Authorization: Bearer tok-alice' \
//	     -H 'Idempotency-Key: "order-1"' -d '{"items":[{"sku":"book","qty":1,"price":1500}]}'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/idemkit/idemkit/examples/internal/backend"
	"github.com/idemkit/idemkit/examples/internal/report"
)

func main() {
	kind := backend.Flag()
	listen := flag.String("listen", "", "serve on this address instead of running the demo")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	store, closeStore := backend.MustOpen(ctx, "cassandra-service", *kind)
	defer closeStore()

	if *listen != "" {
		svc := &Service{Store: store, Tokens: map[string]string{"tok-alice": "alice", "tok-bob": "bob"}, faults: map[string]bool{}}
		srv := &http.Server{Addr: *listen, Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(shutdown)
		}()
		fmt.Printf("orders service on http://%s (tokens: tok-alice, tok-bob), %s store\n", *listen, *kind)
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "cassandra-service:", err)
			os.Exit(1)
		}
		return
	}

	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	fmt.Printf("idemkit orders service demo on the %s store\n\n", *kind)
	rep, err := Run(ctx, store)
	report.Finish("cassandra-service", rep, err)
}
