package cassandra_test

import (
	"context"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// newTable creates a table in the test keyspace and returns its name.
func newTable(t testing.TB, s *gocql.Session, ks string, opts ...cassandra.Option) string {
	t.Helper()
	table := ks + "." + testenv.UniqueName(t, "idem")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cassandra.CreateTable(ctx, s, table, opts...); err != nil {
		t.Fatal(err)
	}
	return table
}

func newStore(t testing.TB, s *gocql.Session, table string, opts ...cassandra.Option) *cassandra.Store {
	t.Helper()
	st, err := cassandra.New(s, table, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestConformance(t *testing.T) {
	t.Parallel()
	session, ks := testenv.Cassandra(t)
	for _, tc := range []struct {
		name string
		opts []cassandra.Option
	}{
		{"Serial", nil},
		{"LocalSerial", []cassandra.Option{
			cassandra.WithSerialConsistency(gocql.LocalSerial),
			cassandra.WithCommitConsistency(gocql.LocalQuorum),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := newTable(t, session, ks, tc.opts...)
			idemtest.Run(t, func(t *testing.T) idem.Store { return newStore(t, session, table, tc.opts...) })
		})
	}
}
