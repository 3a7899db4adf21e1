// Command orders is an order service that writes each order exactly once,
// not just answers each request once. On DynamoDB (-store=dynamodb) an
// order item commits with its idempotent answer in one transaction
// (dynamo.DoTx): a client retry, a lost response of the transaction, a
// worker stalled past its lease and a taken order id each leave the order
// written once. On Cassandra and on the embedded store, a ledger row per
// order is fenced with the claim's Lease.Fence (cassandra.FencedUpdate on
// Cassandra): a stalled worker's write after its successor's is refused.
// It prints what happened and exits 1 if an order was written other than
// once.
//
//	go run ./examples/orders                  # on the embedded store
//	go run ./examples/orders -store=dynamodb  # or cassandra; see examples/internal/backend
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/examples/internal/backend"
	"github.com/idemkit/idemkit/examples/internal/report"
)

func main() {
	kind := backend.Flag()
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b, closeBackend, err := open(ctx, *kind)
	if err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(2)
	}
	defer closeBackend()

	fmt.Printf("idemkit orders demo on the %s store\n\n", b.Kind)
	rep, err := Run(ctx, b)
	report.Finish("orders", rep, err)
}

// open opens the backend named kind: for DynamoDB a client of its own,
// through a Wire, and the orders table; for Cassandra the session behind
// the store and the ledger table.
func open(ctx context.Context, kind string) (*Backend, func(), error) {
	switch kind {
	case "memory", "":
		return NewMemoryBackend(), func() {}, nil
	case "dynamodb":
		wire := NewWire(awshttp.NewBuildableClient().GetTransport())
		client, table, err := backend.DynamoDB(ctx, func(o *dynamodb.Options) {
			o.HTTPClient = &http.Client{Transport: wire}
		})
		if err != nil {
			return nil, nil, err
		}
		b, err := NewDynamoDBBackend(ctx, client, wire, table)
		return b, func() {}, err
	case "cassandra":
		session, table, err := backend.Cassandra(ctx)
		if err != nil {
			return nil, nil, err
		}
		b, err := NewCassandraBackend(ctx, session, table)
		if err != nil {
			session.Close()
			return nil, nil, err
		}
		return b, session.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown store %q (want memory, dynamodb or cassandra)", kind)
}
