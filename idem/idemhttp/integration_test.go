package idemhttp_test

import (
	"testing"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/storetest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestMiddlewareDynamoDB runs the same tests as TestMiddleware on a fresh table of
// every DynamoDB server testenv finds (moto, ministack).
func TestMiddlewareDynamoDB(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			runSuite(t, func(t *testing.T) idem.Store { return storetest.DynamoDB(t, srv) })
		})
	}
}

// TestMiddlewareCassandra runs the same tests as TestMiddleware on a fresh table in
// Cassandra 5.0.
func TestMiddlewareCassandra(t *testing.T) {
	runSuite(t, func(t *testing.T) idem.Store { return storetest.Cassandra(t) })
}
