package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// ClusterNodes is the number of nodes of the cluster testenv/cluster.sh runs.
const ClusterNodes = 3

// Bounds of the cluster helpers. A node restarts in 10-30 s on this project's 2-core machine
// (the script also waits until every node sees it up); the lock may be held by a test in
// another package for as long as that test runs.
const (
	clusterStartTimeout = 5 * time.Minute
	clusterKillTimeout  = time.Minute
	clusterLockTimeout  = 20 * time.Minute
	clusterProbeTimeout = 2 * time.Minute
)

// Cluster is the 3-node Cassandra cluster started by testenv/cluster.sh, as seen by one test:
// CassandraCluster hands each test its own Cluster, holding the cluster's lock until the test
// ends, and remembers which nodes the test killed so that they are restarted when it ends.
type Cluster struct {
	hosts []string // host:port of nodes 1..3
	ctl   string   // absolute path of testenv/cluster.sh

	mu     sync.Mutex
	killed map[int]bool // nodes killed and not yet started again
}

// CassandraCluster returns the 3-node cluster of testenv/cluster.sh, found through the
// environment that testenv/env.sh prints while the cluster runs:
//
//	IDEM_CASSANDRA_CLUSTER=127.0.0.11:9042,127.0.0.12:9042,127.0.0.13:9042
//	IDEM_CASSANDRA_CLUSTER_CTL=/abs/path/testenv/cluster.sh
//
// Without them it skips t (fails it under IDEM_REQUIRE_SERVERS=1). The cluster is optional for
// a developer's run; CI starts it.
//
// Tests of the cluster kill nodes, and go test runs packages in parallel processes, so
// CassandraCluster first takes an exclusive lock that every test of the same cluster shares
// (an flock on IDEM_CASSANDRA_CLUSTER_LOCK, by default testenv/.run/cluster/tests.lock), and
// holds it until t ends; a subtest of the test holding it shares it. It then makes
// sure the three nodes run and see each other up (starting any that is down), and on cleanup
// restarts every node the test killed and waits until all three are up again, so that no
// test's kill leaks into the next one. A child process of the test must not call it (it would
// wait for its parent's lock): pass it Hosts instead.
func CassandraCluster(t testing.TB) *Cluster {
	t.Helper()
	hosts := splitList(os.Getenv("IDEM_CASSANDRA_CLUSTER"))
	ctl := os.Getenv("IDEM_CASSANDRA_CLUSTER_CTL")
	if len(hosts) == 0 || ctl == "" {
		unavailable(t, `no Cassandra cluster: set IDEM_CASSANDRA_CLUSTER and IDEM_CASSANDRA_CLUSTER_CTL (testenv/cluster.sh start, then eval "$(testenv/env.sh)")`)
	}
	if len(hosts) != ClusterNodes {
		t.Fatalf("testenv: IDEM_CASSANDRA_CLUSTER names %d hosts, want %d: %q", len(hosts), ClusterNodes, hosts)
	}
	for _, h := range hosts {
		if _, _, err := net.SplitHostPort(h); err != nil {
			t.Fatalf("testenv: IDEM_CASSANDRA_CLUSTER entry %q is not host:port: %v", h, err)
		}
	}
	if !filepath.IsAbs(ctl) {
		t.Fatalf("testenv: IDEM_CASSANDRA_CLUSTER_CTL=%q is not an absolute path", ctl)
	}
	lock, err := clusterLockPath(ctl)
	if err != nil {
		t.Fatalf("testenv: cluster lock: %v", err)
	}
	lockCluster(t, lock)
	c := &Cluster{hosts: hosts, ctl: ctl, killed: map[int]bool{}}
	t.Cleanup(func() { c.restore(t) }) // runs before the unlock: cleanups run last-in, first-out
	if err := c.probeAll(t.Context()); err != nil {
		t.Logf("testenv: cluster not fully up (%v); starting it", err)
		c.restore(t)
	}
	return c
}

// Hosts returns the host:port of nodes 1, 2 and 3, in that order.
func (c *Cluster) Hosts() []string { return append([]string(nil), c.hosts...) }

// Session returns a session to all three nodes in keyspace (empty: none), closed when t ends:
// consistency QUORUM, serial consistency SERIAL, client timeouts of CassandraTimeout, and down
// nodes retried every second (so a restarted node is used again soon).
func (c *Cluster) Session(t testing.TB, keyspace string) *gocql.Session {
	t.Helper()
	s, err := c.clusterConfig(keyspace).CreateSession()
	if err != nil {
		t.Fatalf("testenv: connecting to the Cassandra cluster %v: %v", c.hosts, err)
	}
	t.Cleanup(s.Close)
	return s
}

func (c *Cluster) clusterConfig(keyspace string) *gocql.ClusterConfig {
	cc := newCassandraCluster(c.hosts, keyspace)
	cc.ReconnectInterval = time.Second
	return cc
}

// Keyspace makes a fresh keyspace (SimpleStrategy, replication factor 3: every node holds
// every row) and returns a Session in it and its name. When t ends the test's killed nodes are
// restarted first, then the keyspace is dropped.
func (c *Cluster) Keyspace(t testing.TB) (*gocql.Session, string) {
	t.Helper()
	admin, err := c.clusterConfig("").CreateSession()
	if err != nil {
		t.Fatalf("testenv: connecting to the Cassandra cluster %v: %v", c.hosts, err)
	}
	ks := UniqueName(t, "idem")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = admin.Query(fmt.Sprintf(
		`CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': %d}`, ks, ClusterNodes,
	)).ExecContext(ctx)
	if err != nil {
		admin.Close()
		t.Fatalf("testenv: creating keyspace %s on the cluster: %v", ks, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		c.restore(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := admin.Query(`DROP KEYSPACE IF EXISTS ` + ks).ExecContext(ctx); err != nil {
			t.Errorf("testenv: dropping keyspace %s on the cluster: %v", ks, err)
		}
	})
	return c.Session(t, ks), ks
}

// Kill SIGKILLs node (1..3) through `cluster.sh kill N` and returns once the process is gone:
// nothing runs its shutdown, so its connections break mid-request and its commit log is cut
// wherever it was. It fails t on error, so call it from the test's goroutine; KillNode is for
// other goroutines.
func (c *Cluster) Kill(t testing.TB, node int) {
	t.Helper()
	start := time.Now()
	if err := c.KillNode(node); err != nil {
		t.Fatal(err)
	}
	t.Logf("testenv: cluster node %d (%s) killed in %v", node, c.hosts[node-1], time.Since(start).Round(time.Millisecond))
}

// Start starts node (1..3) again on its data through `cluster.sh start N`, and returns once it
// serves CQL and every node sees every other one up. It fails t on error, so call it from the
// test's goroutine; StartNode is for other goroutines.
func (c *Cluster) Start(t testing.TB, node int) {
	t.Helper()
	start := time.Now()
	if err := c.StartNode(t.Context(), node); err != nil {
		t.Fatal(err)
	}
	t.Logf("testenv: cluster node %d (%s) started in %v", node, c.hosts[node-1], time.Since(start).Round(time.Millisecond))
}

// KillNode is Kill returning its error, safe to call from any goroutine. The node counts as
// killed (restarted when the test ends) even if the kill failed midway.
func (c *Cluster) KillNode(node int) error {
	if err := c.checkNode(node); err != nil {
		return err
	}
	c.mu.Lock()
	c.killed[node] = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), clusterKillTimeout)
	defer cancel()
	return c.run(ctx, "kill", fmt.Sprint(node))
}

// StartNode is Start returning its error, safe to call from any goroutine: it starts node and
// waits until the script and a probe through every node (a read at consistency ALL, which a
// coordinator refuses while it thinks a replica down) agree that all three are up.
func (c *Cluster) StartNode(ctx context.Context, node int) error {
	if err := c.checkNode(node); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), clusterStartTimeout)
	defer cancel()
	if err := c.run(ctx, "start", fmt.Sprint(node)); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.killed, node)
	c.mu.Unlock()
	return c.waitAllUp(ctx)
}

func (c *Cluster) checkNode(node int) error {
	if node < 1 || node > ClusterNodes {
		return fmt.Errorf("testenv: no cluster node %d (1..%d)", node, ClusterNodes)
	}
	return nil
}

// restore starts every node the test killed (`cluster.sh start` starts whichever is down and
// waits until all see each other up), then probes the three. Failures fail t: the next test
// would otherwise run on a broken cluster.
func (c *Cluster) restore(t testing.TB) {
	c.mu.Lock()
	killed := len(c.killed)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	if killed > 0 || c.probeAll(ctx) != nil {
		start := time.Now()
		if err := c.run(ctx, "start"); err != nil {
			t.Errorf("testenv: restarting the cluster: %v", err)
			return
		}
		c.mu.Lock()
		clear(c.killed)
		c.mu.Unlock()
		t.Logf("testenv: cluster restarted in %v", time.Since(start).Round(time.Millisecond))
	}
	if err := c.waitAllUp(ctx); err != nil {
		t.Errorf("testenv: %v", err)
	}
}

// run runs the cluster script with args; its output goes into the error when it fails.
func (c *Cluster) run(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, c.ctl, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testenv: %s %s: %w\n%s", c.ctl, strings.Join(args, " "), err, out)
	}
	return nil
}

// waitAllUp probes every node until all three answer, or clusterProbeTimeout passes.
func (c *Cluster) waitAllUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, clusterProbeTimeout)
	defer cancel()
	for {
		err := c.probeAll(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not up after %v: %w", clusterProbeTimeout, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// probeAll reads, with each node as the coordinator, one partition of system_distributed
// (replication factor 3, so every node is a replica) at consistency ALL. A coordinator refuses
// that read as Unavailable while its failure detector holds any node down, and it needs an
// answer from all three: success means every node serves CQL and sees the others up.
func (c *Cluster) probeAll(ctx context.Context) error {
	var errs []error
	for i, h := range c.hosts {
		if err := probeNode(ctx, h); err != nil {
			errs = append(errs, fmt.Errorf("node %d (%s): %w", i+1, h, err))
		}
	}
	return errors.Join(errs...)
}

func probeNode(ctx context.Context, host string) error {
	cc := gocql.NewCluster(host)
	cc.Timeout = 5 * time.Second
	cc.ConnectTimeout = 5 * time.Second
	cc.DisableInitialHostLookup = true
	cc.Consistency = gocql.All
	s, err := cc.CreateSession()
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Query(`SELECT id FROM system_distributed.repair_history WHERE keyspace_name = 'idemkit' AND columnfamily_name = 'probe' LIMIT 1`).
		ExecContext(ctx)
}

// The lock of the cluster's tests: an flock shared by every process, re-entrant for the
// subtests of the test holding it within this process.
var clusterLock struct {
	mu    sync.Mutex
	cond  *sync.Cond
	owner string // top-level test holding the lock, "" when free
	depth int
	file  *os.File
}

func init() { clusterLock.cond = sync.NewCond(&clusterLock.mu) }

// clusterLockPath is IDEM_CASSANDRA_CLUSTER_LOCK, else tests.lock in the cluster's run folder
// (IDEM_TESTENV_RUN, default testenv/.run, next to the script: testenv/.run/cluster/tests.lock),
// so that every test binary using the cluster takes the same lock, and a person can take it too:
// flock testenv/.run/cluster/tests.lock testenv/cluster.sh kill 2
func clusterLockPath(ctl string) (string, error) {
	if p := os.Getenv("IDEM_CASSANDRA_CLUSTER_LOCK"); p != "" {
		return p, nil
	}
	run := os.Getenv("IDEM_TESTENV_RUN")
	if run == "" {
		run = filepath.Join(filepath.Dir(ctl), ".run")
	}
	dir := filepath.Join(run, "cluster")
	return filepath.Join(dir, "tests.lock"), os.MkdirAll(dir, 0o755)
}

// lockCluster takes the cluster's lock for t (waiting at most clusterLockTimeout) and
// releases it when t ends.
func lockCluster(t testing.TB, path string) {
	t.Helper()
	top, _, _ := strings.Cut(t.Name(), "/")
	l := &clusterLock
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.owner != "" && l.owner != top {
		l.cond.Wait()
	}
	if l.owner == "" {
		f, err := flockWait(path, clusterLockTimeout)
		if err != nil {
			t.Fatalf("testenv: cluster lock: %v", err)
		}
		fmt.Fprintf(f, "pid %d, test %s, since %s\n", os.Getpid(), top, time.Now().Format(time.RFC3339))
		l.owner, l.file = top, f
	}
	l.depth++
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.depth--; l.depth == 0 {
			_ = l.file.Truncate(0)
			_ = l.file.Close() // closing the last descriptor releases the flock
			l.owner, l.file = "", nil
			l.cond.Broadcast()
		}
	})
}

// flockWait opens path and takes an exclusive flock on it, polling until timeout.
func flockWait(path string, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			_ = f.Truncate(0)
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			holder, _ := os.ReadFile(path)
			f.Close()
			return nil, fmt.Errorf("%s not acquired within %v (%v); held by: %s", path, timeout, err, strings.TrimSpace(string(holder)))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
