package cassandra_test

// Stand-in for internal/testenv's Cassandra helpers, same API, until that
// package lands.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

var envSeq atomic.Int64

func envUniqueName(t testing.TB, prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%1e9, envSeq.Add(1))
}

func envCassandraHosts(t testing.TB) []string {
	t.Helper()
	var hosts []string
	for _, h := range strings.Split(os.Getenv("IDEM_CASSANDRA_HOSTS"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		if os.Getenv("IDEM_REQUIRE_SERVERS") == "1" {
			t.Fatal("no Cassandra: set IDEM_CASSANDRA_HOSTS")
		}
		t.Skip("no Cassandra: set IDEM_CASSANDRA_HOSTS (testenv/cassandra.sh start)")
	}
	return hosts
}

// envCassandra returns a session on a fresh keyspace, dropped on cleanup.
func envCassandra(t testing.TB) (*gocql.Session, string) {
	t.Helper()
	cluster := gocql.NewCluster(envCassandraHosts(t)...)
	cluster.Timeout = 15 * time.Second
	s, err := cluster.CreateSession()
	if err != nil {
		t.Fatalf("connecting to Cassandra: %v", err)
	}
	ks := envUniqueName(t, "idemtest")
	ctx := context.Background()
	if err := s.Query(`CREATE KEYSPACE ` + ks + ` WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`).ExecContext(ctx); err != nil {
		s.Close()
		t.Fatalf("creating keyspace %s: %v", ks, err)
	}
	t.Cleanup(func() {
		_ = s.Query(`DROP KEYSPACE IF EXISTS ` + ks).ExecContext(context.Background())
		s.Close()
	})
	return s, ks
}
