package main

import (
	"context"
	"testing"
	"time"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/internal/testenv"
)

// eachStore runs fn on the embedded store, then on a fresh table of every
// real server testenv finds: DynamoDB emulators and Cassandra 5.0. A
// missing server skips its subtest, or fails it with IDEM_REQUIRE_SERVERS=1.
func eachStore(t *testing.T, fn func(t *testing.T, s idem.Store)) {
	t.Run("memory", func(t *testing.T) { fn(t, memstore.New()) })
	t.Run("dynamodb", func(t *testing.T) {
		for _, srv := range testenv.DynamoDBServers(t) {
			t.Run(srv.Name, func(t *testing.T) {
				c := srv.Client(t)
				table := testenv.UniqueName(t, "example")
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := dynamo.CreateTable(ctx, c, table); err != nil {
					t.Fatal(err)
				}
				testenv.DeleteTableOnCleanup(t, c, table)
				s, err := dynamo.New(c, table)
				if err != nil {
					t.Fatal(err)
				}
				fn(t, s)
			})
		}
	})
	t.Run("cassandra", func(t *testing.T) {
		session, ks := testenv.Cassandra(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cassandra.CreateTable(ctx, session, ks+".idem"); err != nil {
			t.Fatal(err)
		}
		s, err := cassandra.New(session, ks+".idem")
		if err != nil {
			t.Fatal(err)
		}
		fn(t, s)
	})
}
