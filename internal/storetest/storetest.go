// Package storetest gives the project's tests the idem.Stores to run on and
// the helpers they share:
//
//   - Each runs a test on every Store: memstore, a fresh table on each
//     DynamoDB server and on Cassandra, as internal/testenv finds them (a
//     missing server skips its subtest, or fails it when
//     IDEM_REQUIRE_SERVERS=1); EachOnFakeClock runs the memstore subtest on
//     synctest's clock. DynamoDB and Cassandra are their constructors,
//     for a test that runs on one backend or builds its own loop (the
//     adapters' integration tests, the torture runs).
//   - HangUp wraps a Store to answer a write as a store whose caller gave up
//     mid-write does (the adapters' hang-up tests).
//   - LargestResult and ResultNotStored measure the largest result idem.Do
//     stores on a backend, and check the answer beyond it (the backends'
//     external tests; their internal tests cannot import this package,
//     which imports them).
//
// A new backend adds its constructor and its case in Each (CONTRIBUTING.md).
package storetest

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/internal/testenv"
)

// Each runs fn as subtests: "memory" on memstore, then "dynamodb/NAME" on a
// fresh table of each DynamoDB server and "cassandra" on a fresh table of
// Cassandra, those in parallel.
func Each(t *testing.T, fn func(t *testing.T, s idem.Store)) {
	each(t, fn, false)
}

// EachOnFakeClock is Each with the memory subtest inside a testing/synctest
// bubble, so the leases, back-offs and heartbeats fn waits out pass at once
// on the fake clock there, while the servers' subtests keep the real one.
// On memory, fn must start no goroutine that outlives it and use no
// network (an httptest server keeps the bubble from ever ending).
func EachOnFakeClock(t *testing.T, fn func(t *testing.T, s idem.Store)) {
	each(t, fn, true)
}

func each(t *testing.T, fn func(t *testing.T, s idem.Store), fakeClock bool) {
	t.Run("memory", func(t *testing.T) {
		if !fakeClock {
			fn(t, memstore.New())
			return
		}
		synctest.Test(t, func(t *testing.T) { fn(t, memstore.New()) })
	})
	// The servers' subtests run in parallel with each other: they spend
	// their time waiting on round trips and leases.
	t.Run("dynamodb", func(t *testing.T) {
		t.Parallel()
		for _, srv := range testenv.DynamoDBServers(t) {
			t.Run(srv.Name, func(t *testing.T) {
				t.Parallel()
				fn(t, DynamoDB(t, srv))
			})
		}
	})
	t.Run("cassandra", func(t *testing.T) {
		t.Parallel()
		fn(t, Cassandra(t))
	})
}

// DynamoDB returns a Store on a fresh table of srv, deleted when t ends.
func DynamoDB(t testing.TB, srv testenv.DynamoDBServer) idem.Store {
	t.Helper()
	c := srv.Client(t)
	table := testenv.UniqueName(t, "idem")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dynamo.CreateTable(ctx, c, table); err != nil {
		t.Fatalf("%s: CreateTable %s: %v", srv.Name, table, err)
	}
	testenv.DeleteTableOnCleanup(t, c, table)
	s, err := dynamo.New(c, table)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Cassandra returns a Store on a table in a fresh keyspace, dropped when t
// ends.
func Cassandra(t testing.TB) idem.Store {
	t.Helper()
	session, ks := testenv.Cassandra(t)
	table := ks + ".idem"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cassandra.CreateTable(ctx, session, table); err != nil {
		t.Fatalf("cassandra: CreateTable %s: %v", table, err)
	}
	s, err := cassandra.New(session, table)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
