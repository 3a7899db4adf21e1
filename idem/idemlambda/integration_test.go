package idemlambda_test

import (
	"testing"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/storetest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestWrappersDynamoDB runs the same tests as TestWrappers on a fresh table of
// every DynamoDB server testenv finds (moto, ministack).
func TestWrappersDynamoDB(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			runSuite(t, func(t *testing.T) idem.Store { return storetest.DynamoDB(t, srv) })
		})
	}
}

// TestWrappersCassandra runs the same tests as TestWrappers on a fresh table in
// Cassandra 5.0.
func TestWrappersCassandra(t *testing.T) {
	runSuite(t, func(t *testing.T) idem.Store { return storetest.Cassandra(t) })
}
