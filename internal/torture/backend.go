package torture

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// Backend says where a run's store lives, so that every child process can
// build its own Store on the same table.
type Backend struct {
	Kind string // "memory", "dynamodb", "cassandra" (one node) or "cluster"
	Name string // in reports: memstore, moto, ministack, cassandra, cluster

	// Endpoint is what children connect to: a DynamoDB base URL, or the
	// host:port of a Cassandra node (a fault proxy's address when the
	// run has one, which then stands for every node).
	Endpoint string
	Proxied  bool     // Cassandra: Endpoint is a proxy; translate every node address to it
	Hosts    []string // cluster: the nodes' host:port, used when not proxied
	Table    string   // DynamoDB table, or "keyspace.table" for Cassandra
}

// Timeouts of the stores children build: short, so that a response lost on
// the wire costs a caller seconds, not the server defaults.
const (
	dynamoTimeout    = 3 * time.Second
	cassandraTimeout = 4 * time.Second
)

// Open builds a Store on b for a child process (or the recovery pass).
// Everything it opens is closed when t ends.
func (b Backend) Open(t testing.TB) (idem.Store, error) {
	switch b.Kind {
	case "dynamodb":
		srv := testenv.DynamoDBServer{Name: b.Name, Endpoint: b.Endpoint}
		c := srv.Client(t, func(o *dynamodb.Options) {
			o.HTTPClient = &http.Client{Transport: testenv.NewDynamoDBTransport(), Timeout: dynamoTimeout}
		})
		return dynamo.New(c, b.Table)
	case "cassandra", "cluster":
		s, err := b.session()
		if err != nil {
			return nil, err
		}
		t.Cleanup(s.Close)
		return cassandra.New(s, b.Table)
	}
	return nil, fmt.Errorf("torture: backend kind %q cannot be opened by a child process", b.Kind)
}

// session connects to Cassandra: through the proxy with protocol v4 and
// every node address translated to it, or to the cluster's nodes.
func (b Backend) session() (*gocql.Session, error) {
	hosts := b.Hosts
	if b.Proxied || len(hosts) == 0 {
		hosts = []string{b.Endpoint}
	}
	c := gocql.NewCluster(hosts...)
	c.Timeout, c.ConnectTimeout = cassandraTimeout, cassandraTimeout
	c.Consistency, c.SerialConsistency = gocql.Quorum, gocql.Serial
	c.ReconnectInterval = time.Second // a restarted node is used again soon
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy(), gocql.DoNotShuffleReplicas())
	if b.Proxied {
		host, port, err := net.SplitHostPort(b.Endpoint)
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, err
		}
		ip := net.ParseIP(host)
		c.ProtoVersion = 4
		// The proxy cuts connections: with more of them, a cut seldom
		// leaves the pool empty (gocql then answers "no hosts available"
		// until it has reconnected).
		c.NumConns = 4
		c.AddressTranslator = gocql.AddressTranslatorFunc(func(net.IP, int) (net.IP, int) { return ip, n })
	}
	var s *gocql.Session
	var err error
	for range 5 { // a fault on the wire may cut the first connections
		if s, err = c.CreateSession(); err == nil {
			return s, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return nil, fmt.Errorf("torture: connecting to Cassandra at %v: %w", hosts, err)
}

// counterTotals reads each counter's final total.
func counterTotals(ctx context.Context, s idem.Store, p Plan, log *Log) error {
	for c := range p.Counters {
		total, err := idem.Counter{Store: s, Key: CounterKey(c)}.Value(ctx)
		if err != nil {
			return fmt.Errorf("torture: reading counter %s: %w", CounterKey(c), err)
		}
		log.Write(Record{Ev: EvTotal, Kind: KindAdd, Key: CounterKey(c), Task: -1, Total: total, Rec: true})
	}
	return nil
}

// EachShared runs fn, in parallel subtests, on a fresh table of each
// DynamoDB server and of the Cassandra node, with the Backend a child
// process opens the same table with: the stores a second process shares.
// (A memstore dies with its process, and with it every record of what was
// done.)
func EachShared(t *testing.T, fn func(t *testing.T, s idem.Store, b Backend)) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			c := srv.Client(t)
			table := testenv.UniqueName(t, "idem")
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			if err := dynamo.CreateTable(ctx, c, table); err != nil {
				t.Fatalf("CreateTable %s: %v", table, err)
			}
			testenv.DeleteTableOnCleanup(t, c, table)
			s, err := dynamo.New(c, table)
			if err != nil {
				t.Fatal(err)
			}
			fn(t, s, Backend{Kind: "dynamodb", Name: srv.Name, Endpoint: srv.Endpoint, Table: table})
		})
	}
	t.Run("cassandra", func(t *testing.T) {
		t.Parallel()
		session, ks := testenv.Cassandra(t)
		table := ks + ".idem"
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := cassandra.CreateTable(ctx, session, table); err != nil {
			t.Fatalf("CreateTable %s: %v", table, err)
		}
		s, err := cassandra.New(session, table)
		if err != nil {
			t.Fatal(err)
		}
		fn(t, s, Backend{Kind: "cassandra", Name: "cassandra", Endpoint: testenv.CassandraHosts(t)[0], Table: table})
	})
}
