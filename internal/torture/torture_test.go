package torture

import (
	"context"
	"testing"
	"time"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/internal/storetest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestTortureChild is the body of the child processes the torture tests
// start (this test binary, run with -test.run=^TestTortureChild$); run
// directly, it skips.
func TestTortureChild(t *testing.T) {
	if !IsChild() {
		t.Skip("runs only as a child process of a torture test")
	}
	RunChild(t)
}

func newPlan(t *testing.T, kind string) Plan {
	t.Helper()
	scale, err := ScaleFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := SeedFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("torture: scale %s, seed %d (IDEM_TORTURE_SEED=%d replays the workload)", scale, seed, seed)
	return NewPlan(scale, kind, seed)
}

// TestTortureMemstore tortures the algorithms on memstore, in process:
// workers fail fn at random, end their goroutine inside fn (a crash that
// neither completes nor releases: the key waits for its lease to pass) and
// deliver every key several times, concurrently and later. It fails on
// any violation Check counts.
func TestTortureMemstore(t *testing.T) {
	p := newPlan(t, "memory")
	Torture(t, Backend{Kind: "memory", Name: "memstore"}, p, Options{Store: memstore.New()})
}

// TestTortureDynamoDB tortures the algorithms on each DynamoDB emulator:
// child processes SIGKILLed by the parent and by fn itself, fn failing at
// random, duplicate deliveries, and requests through a fault proxy that
// drops responses, cuts connections and delays answers. It fails on any
// violation Check counts, and when a fault never happened.
func TestTortureDynamoDB(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			p := newPlan(t, "dynamodb")
			store := storetest.DynamoDB(t, srv).(*dynamo.Store)
			wire, endpoint := startHTTPWire(t, p, srv.Endpoint)
			b := Backend{Kind: "dynamodb", Name: srv.Name, Endpoint: endpoint, Table: store.Table()}
			Torture(t, b, p, Options{Store: store, Wire: wire})
		})
	}
}

// TestTortureCassandra tortures the algorithms on the single Cassandra
// node, as TestTortureDynamoDB does, the children's sessions going through
// a CQL fault proxy (protocol v4, every node address translated to it).
func TestTortureCassandra(t *testing.T) {
	p := newPlan(t, "cassandra")
	session, ks := testenv.Cassandra(t)
	table := ks + ".idem"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cassandra.CreateTable(ctx, session, table); err != nil {
		t.Fatal(err)
	}
	store, err := cassandra.New(session, table)
	if err != nil {
		t.Fatal(err)
	}
	wire, endpoint := startCQLWire(t, p, testenv.CassandraHosts(t)[0])
	b := Backend{Kind: "cassandra", Name: "cassandra", Endpoint: endpoint, Proxied: wire != nil, Table: table}
	Torture(t, b, p, Options{Store: store, Wire: wire})
}
