package testenv_test

import (
	"context"
	"errors"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/internal/testenv"
)

// TestClusterKeyspace checks the cluster helpers on the running cluster: a keyspace with
// replication factor 3 takes a write at consistency ALL (so all three nodes hold it), and a
// subtest can take the cluster again while its parent holds the lock (it would otherwise wait
// for itself until the lock timeout).
func TestClusterKeyspace(t *testing.T) {
	c := testenv.CassandraCluster(t)
	if got := len(c.Hosts()); got != testenv.ClusterNodes {
		t.Fatalf("Hosts: got %d hosts, want %d", got, testenv.ClusterNodes)
	}
	s, ks := c.Keyspace(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := s.Query(`CREATE TABLE ` + ks + `.t (k text PRIMARY KEY, v int)`).ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Query(`INSERT INTO `+ks+`.t (k, v) VALUES (?, ?)`, "a", 1).Consistency(gocql.All).ExecContext(ctx); err != nil {
		t.Fatalf("write at ALL: %v (is every node a replica?)", err)
	}
	t.Run("Reentrant", func(t *testing.T) {
		testenv.CassandraCluster(t) // would wait for the parent's lock until the test times out
	})
	var v int
	if err := s.Query(`SELECT v FROM `+ks+`.t WHERE k = ?`, "a").Consistency(gocql.All).ScanContext(ctx, &v); err != nil || v != 1 {
		t.Fatalf("read at ALL: got %d, %v; want 1, nil", v, err)
	}
	if err := c.KillNode(0); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("KillNode(0): got %v, want an error naming the nodes", err)
	}
}
