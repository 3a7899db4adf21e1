package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// CassandraTimeout is the client timeout of sessions made by Cassandra: longer than the
// server's own LWT timeouts (write 2 s, CAS contention 1 s, request 10 s in testenv's yaml), so
// the server, not the client, reports a timed-out lightweight transaction.
const CassandraTimeout = 12 * time.Second

// CassandraHosts returns the Cassandra contact points, host:port each: IDEM_CASSANDRA_HOSTS
// (comma-separated) if set; else it skips t, or fails it when RequireServers. testenv/up.sh
// starts Cassandra on loopback; with Docker, `eval "$(make -s docker-env)"` starts a container.
func CassandraHosts(t testing.TB) []string {
	t.Helper()
	if hosts := splitList(os.Getenv("IDEM_CASSANDRA_HOSTS")); len(hosts) > 0 {
		for _, h := range hosts {
			if _, _, err := net.SplitHostPort(h); err != nil {
				t.Fatalf("testenv: IDEM_CASSANDRA_HOSTS entry %q is not host:port: %v", h, err)
			}
		}
		return hosts
	}
	unavailable(t, "no Cassandra: set IDEM_CASSANDRA_HOSTS (testenv/up.sh cassandra, then eval \"$(testenv/env.sh)\"; or, with Docker, eval \"$(make -s docker-env)\")")
	return nil
}

// Cassandra returns a session whose keyspace is a fresh one made for t (SimpleStrategy,
// replication factor 1, named by UniqueName), and that keyspace's name. The keyspace is
// dropped and the session closed when t ends. The session negotiates the newest protocol the
// server speaks (v5 on Cassandra 5.0), uses consistency QUORUM and serial consistency SERIAL,
// and has client timeouts of CassandraTimeout; adjust per query as needed.
func Cassandra(t testing.TB) (*gocql.Session, string) {
	t.Helper()
	hosts := CassandraHosts(t)
	admin, err := newCassandraCluster(hosts, "").CreateSession()
	if err != nil {
		t.Fatalf("testenv: connecting to Cassandra at %v: %v", hosts, err)
	}
	ks := UniqueName(t, "idem")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = admin.Query(fmt.Sprintf(
		`CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, ks,
	)).ExecContext(ctx)
	if err != nil {
		admin.Close()
		t.Fatalf("testenv: creating keyspace %s: %v", ks, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := admin.Query(`DROP KEYSPACE IF EXISTS ` + ks).ExecContext(ctx); err != nil {
			t.Errorf("testenv: dropping keyspace %s: %v", ks, err)
		}
	})
	s, err := newCassandraCluster(hosts, ks).CreateSession()
	if err != nil {
		t.Fatalf("testenv: connecting to Cassandra keyspace %s: %v", ks, err)
	}
	t.Cleanup(s.Close) // runs before the DROP above: cleanups run last-in, first-out
	return s, ks
}

func newCassandraCluster(hosts []string, keyspace string) *gocql.ClusterConfig {
	c := gocql.NewCluster(hosts...)
	c.Keyspace = keyspace
	c.Timeout = CassandraTimeout
	c.ConnectTimeout = CassandraTimeout
	c.Consistency = gocql.Quorum
	c.SerialConsistency = gocql.Serial
	return c
}
