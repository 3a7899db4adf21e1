package torture

import (
	"context"
	"fmt"
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

func newPlan(t *testing.T, backend string) Plan {
	t.Helper()
	scale, err := ScaleFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := SeedFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := KeysFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("torture: scale %s, seed %d (IDEM_TORTURE_SEED=%d replays the workload)", scale, seed, seed)
	faults, err := FaultsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlan(scale, backend, seed).WithFaults(faults)
	if keys > 0 {
		p.DoKeys, p.OnceEvents = keys, max(keys/6, 1)
	}
	return p
}

// TestTortureMemstore tortures the algorithms on memstore, in process:
// workers fail fn at random, end their goroutine inside fn (a crash that
// neither completes nor releases: the key waits for its lease to pass) and
// deliver every key several times, concurrently and later. It fails on
// any violation Check counts.
func TestTortureMemstore(t *testing.T) {
	t.Parallel()
	p := newPlan(t, "memstore")
	Torture(t, Backend{Kind: "memory", Name: "memstore"}, p, Options{Store: memstore.New()})
}

// TestTortureDynamoDB tortures the algorithms on each DynamoDB emulator:
// child processes SIGKILLed by the parent and by fn itself, fn failing at
// random, duplicate deliveries, and requests through a fault proxy that
// drops responses, cuts connections and delays answers. It fails on any
// violation Check counts, and when a fault never happened.
func TestTortureDynamoDB(t *testing.T) {
	t.Parallel()
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			p := newPlan(t, srv.Name)
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
	t.Parallel()
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

// TestTortureClusterNodeKill tortures the algorithms on the three-node
// cluster (replication factor 3, QUORUM and SERIAL), with a node SIGKILLed
// mid-run and started again, on top of the child kills, self-kills, fn
// failures and duplicate deliveries; children connect to all three nodes
// directly. The node is chosen by the seed; the kill comes a few seconds
// into the chaos phase, and the node is started again after a few seconds
// more, while the workload runs. It fails on any violation (it must report
// 0 double executions and 0 stuck keys), and when no call succeeded while
// the node was down. It is the one torture test not run in parallel with
// the others: node kills and restarts are timed, and want the machine.
func TestTortureClusterNodeKill(t *testing.T) {
	cl := testenv.CassandraCluster(t)
	p := newPlan(t, "cluster")
	session, ks := cl.Keyspace(t)
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
	b := Backend{Kind: "cluster", Name: "cluster", Hosts: cl.Hosts(), Table: table}
	node := 1 + int(p.Seed%3)
	Torture(t, b, p, Options{Store: store, Nemesis: func(ctx context.Context) NemesisReport {
		return killNode(ctx, cl, node, 4*time.Second, 6*time.Second)
	}})
}

// killNode waits after, kills node, leaves it down for hold, and starts it
// again (waiting until every node sees it up), whatever ctx says by then:
// the recovery pass runs on the whole cluster.
func killNode(ctx context.Context, cl *testenv.Cluster, node int, after, hold time.Duration) NemesisReport {
	select {
	case <-ctx.Done():
		return NemesisReport{Note: "the chaos phase ended before the node kill"}
	case <-time.After(after):
	}
	from := time.Now()
	if err := cl.KillNode(node); err != nil {
		return NemesisReport{Note: err.Error()}
	}
	time.Sleep(hold)
	err := cl.StartNode(context.Background(), node)
	w := Window{From: from, To: time.Now()}
	note := fmt.Sprintf("node %d killed, down %.1f s until it served again", node, w.To.Sub(w.From).Seconds())
	if err != nil {
		note = fmt.Sprintf("node %d killed; starting it again failed: %v", node, err)
	}
	return NemesisReport{NodeKills: 1, Down: []Window{w}, Note: note}
}
