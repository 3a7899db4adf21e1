package cassandra_test

import (
	"context"
	"fmt"
	"log"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/idem"
)

// Charge a card at most once per idempotency key, with the claims kept in
// Cassandra. (Not run by go test: it needs a cluster.)
func Example() {
	cluster := gocql.NewCluster("127.0.0.1:9042")
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(
		gocql.RoundRobinHostPolicy(), gocql.DoNotShuffleReplicas())
	session, err := cluster.CreateSession()
	if err != nil {
		log.Fatal(err)
	}
	defer session.Close()

	ctx := context.Background()
	if err := cassandra.CreateTable(ctx, session, "payments.idem"); err != nil {
		log.Fatal(err)
	}
	store, err := cassandra.New(session, "payments.idem")
	if err != nil {
		log.Fatal(err)
	}

	type receipt struct{ ID string }
	r, err := idem.Do(ctx, store, "order-42/charge", func(ctx context.Context) (receipt, error) {
		return receipt{ID: "ch_1"}, nil // call the payment provider here
	}, idem.WithRetention(24*time.Hour))
	fmt.Println(r.ID, err)
}

// A datacenter-local store: Paxos at LOCAL_SERIAL (also for the reads that
// settle unknown outcomes) and commits at LOCAL_QUORUM. Use it only when
// every writer of a key runs in the same datacenter.
func ExampleNew_localDatacenter() {
	var session *gocql.Session // from cluster.CreateSession()
	store, err := cassandra.New(session, "payments.idem",
		cassandra.WithSerialConsistency(gocql.LocalSerial),
		cassandra.WithCommitConsistency(gocql.LocalQuorum),
	)
	_, _ = store, err
}
