package idemhttp_test

import (
	"context"
	"testing"
	"time"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestMiddlewareDynamoDB runs the same tests as TestMiddleware on a fresh table of
// every DynamoDB server testenv finds (moto, ministack).
func TestMiddlewareDynamoDB(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			runSuite(t, func(t *testing.T) idem.Store {
				c := srv.Client(t)
				table := testenv.UniqueName(t, "idemhttp")
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := dynamo.CreateTable(ctx, c, table); err != nil {
					t.Fatalf("%s: CreateTable: %v", srv.Name, err)
				}
				testenv.DeleteTableOnCleanup(t, c, table)
				s, err := dynamo.New(c, table)
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

// TestMiddlewareCassandra runs the same tests as TestMiddleware on a fresh table in
// Cassandra 5.0.
func TestMiddlewareCassandra(t *testing.T) {
	session, ks := testenv.Cassandra(t)
	runSuite(t, func(t *testing.T) idem.Store {
		table := ks + ".idem"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cassandra.CreateTable(ctx, session, table); err != nil {
			t.Fatal(err)
		}
		s, err := cassandra.New(session, table)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
