package dynamo_test

import (
	"testing"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestConformance runs idem's conformance suite (the kernel and every
// algorithm: claims, Do, Update, Once, counters) against each DynamoDB
// server, on a fresh table per layout.
func TestConformance(t *testing.T) {
	layouts := []struct {
		name string
		opts []dynamo.Option
	}{
		{"PartitionKey", nil},
		{"SortKey", []dynamo.Option{
			dynamo.WithKeyAttribute("PK"),
			dynamo.WithSortKey("SK", "idem#conformance"),
			dynamo.WithValueAttribute("data"),
			dynamo.WithVersionAttribute("version"),
			dynamo.WithExpiryAttribute("expires_at"),
			dynamo.WithTokenAttribute("write_token"),
		}},
	}
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			for _, l := range layouts {
				t.Run(l.name, func(t *testing.T) {
					c, name := table(t, srv, l.opts...)
					idemtest.Run(t, func(t *testing.T) idem.Store {
						return mustStore(t, c, name, l.opts...)
					})
				})
			}
		})
	}
}
