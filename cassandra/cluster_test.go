package cassandra_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The cluster tests run on the 3-node cluster of testenv/cluster.sh (skipped without it, failed
// under IDEM_REQUIRE_SERVERS=1), in a keyspace of replication factor 3, with the Store's
// defaults: Paxos at SERIAL, commits at QUORUM, Get at SERIAL. Three nodes saturate the 2 cores
// of this project's machine, so the workloads are small.

// TestClusterLinearizableNodeKill checks idemtest.Linearizable on the cluster while one node is
// SIGKILLed and restarted mid-run. The store under test counts the calls the checker makes and
// drives the fault from them, not from a clock: the call after killAfter kills node 3 (while the
// other clients' requests are in flight, some on the killed node's connections), the call after
// startAfter starts it again in its own goroutine while the traffic goes on, and the calls from
// gateAt on wait until it is up, so the rest of the run has all three nodes back. One node down
// leaves a quorum, so the Store must stay linearizable: no violation is allowed. The test fails
// if the kill or the restart did not happen inside the run.
func TestClusterLinearizableNodeKill(t *testing.T) {
	c := testenv.CassandraCluster(t)
	s, ks := c.Keyspace(t)
	table := newTable(t, s, ks)
	cfg := idemtest.LinearConfig{Clients: 4, Keys: 3, Ops: 40, Rounds: 4, Timeout: 90 * time.Second}
	total := int64(cfg.Clients * cfg.Ops * cfg.Rounds)
	ns := &nodeKillStore{
		Store: newStore(t, s, table), cluster: c, node: 3,
		killAfter: total / 6, startAfter: total / 3, gateAt: total / 2,
		started: make(chan struct{}),
	}
	start := time.Now()
	idemtest.Linearizable(t, ns, cfg)
	elapsed := time.Since(start)
	ns.wg.Wait()

	calls := ns.calls.Load()
	if ns.killedAt.IsZero() || ns.killErr != nil {
		t.Fatalf("node %d was not killed during the run (%d calls, kill after %d): %v", ns.node, calls, ns.killAfter, ns.killErr)
	}
	if ns.startErr != nil {
		t.Fatalf("restarting node %d: %v", ns.node, ns.startErr)
	}
	if calls <= ns.gateAt {
		t.Fatalf("the run made %d calls, want more than %d: the restart did not complete within the run", calls, ns.gateAt)
	}
	t.Logf("%d calls in %v; node %d killed at call %d, restart begun at call %d and done %v later (calls from %d waited for it)",
		calls, elapsed.Round(time.Millisecond), ns.node, ns.killAfter, ns.startAfter, ns.restartTook.Round(time.Millisecond), ns.gateAt)
	ns.errs.log(t)
}

// nodeKillStore is an idem.Store that counts its calls and kills, then restarts, a node of the
// cluster at given calls; it records every error by kind.
type nodeKillStore struct {
	idem.Store
	cluster                       *testenv.Cluster
	node                          int
	killAfter, startAfter, gateAt int64

	calls   atomic.Int64
	started chan struct{} // closed when the restart is over
	wg      sync.WaitGroup
	errs    errorKinds

	// Written before started is closed (restart) or by the one call that kills.
	killedAt    time.Time
	killErr     error
	startErr    error
	restartTook time.Duration
}

// before is called at the start of every call: it kills, restarts or waits as the call's
// number says. A call that waits past its context's deadline fails without touching the store.
func (s *nodeKillStore) before(ctx context.Context) error {
	switch n := s.calls.Add(1); {
	case n == s.killAfter+1:
		s.killErr = s.cluster.KillNode(s.node)
		s.killedAt = time.Now()
	case n == s.startAfter+1:
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(s.started)
			t0 := time.Now()
			s.startErr = s.cluster.StartNode(context.Background(), s.node)
			s.restartTook = time.Since(t0)
		}()
	case n > s.gateAt:
		select {
		case <-s.started:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (s *nodeKillStore) Get(ctx context.Context, key string) (idem.Item, error) {
	if err := s.before(ctx); err != nil {
		return idem.Item{}, err
	}
	it, err := s.Store.Get(ctx, key)
	s.errs.add("Get", err)
	return it, err
}

func (s *nodeKillStore) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	if err := s.before(ctx); err != nil {
		return idem.Item{}, err
	}
	it, err := s.Store.PutIfAbsent(ctx, key, value, ttl)
	s.errs.add("PutIfAbsent", err)
	return it, err
}

func (s *nodeKillStore) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	if err := s.before(ctx); err != nil {
		return idem.Item{}, err
	}
	it, err := s.Store.CompareAndSwap(ctx, key, version, value, ttl)
	s.errs.add("CompareAndSwap", err)
	return it, err
}

func (s *nodeKillStore) CompareAndDelete(ctx context.Context, key string, version int64) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	err := s.Store.CompareAndDelete(ctx, key, version)
	s.errs.add("CompareAndDelete", err)
	return err
}

func (s *nodeKillStore) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	if err := s.before(ctx); err != nil {
		return idem.Item{}, false, err
	}
	it, ok, err := s.Store.Upsert(ctx, key, value, version, ttl)
	s.errs.add("Upsert", err)
	return it, ok, err
}

// errorKinds counts errors by operation and kind; results (not found, conflicts) are not
// errors.
type errorKinds struct {
	mu      sync.Mutex
	n       map[string]int
	example map[string]string
}

func (e *errorKinds) add(op string, err error) {
	var ce *idem.ConflictError
	if err == nil || errors.Is(err, idem.ErrNotFound) || errors.As(err, &ce) {
		return
	}
	k := op + ": " + errorKind(err)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n, e.example = map[string]int{}, map[string]string{}
	}
	e.n[k]++
	if _, ok := e.example[k]; !ok {
		e.example[k] = err.Error()
	}
}

func (e *errorKinds) log(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.n) == 0 {
		t.Log("no call failed")
		return
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(e.n)) {
		fmt.Fprintf(&b, "\n  %4d × %s, e.g. %s", e.n[k], k, e.example[k])
	}
	t.Logf("errors by kind:%s", b.String())
}

// errorKind names what an error is made of: whether it is an unknown outcome, and the driver
// error underneath.
func errorKind(err error) string {
	var (
		unavailable *gocql.RequestErrUnavailable
		writeTO     *gocql.RequestErrWriteTimeout
		readTO      *gocql.RequestErrReadTimeout
		casUnknown  *gocql.RequestErrCASWriteUnknown
		reqErr      gocql.RequestError
		netErr      *net.OpError
	)
	cause := "other"
	switch {
	case errors.As(err, &unavailable):
		cause = fmt.Sprintf("Unavailable (%v: %d alive of %d required)", unavailable.Consistency, unavailable.Alive, unavailable.Required)
	case errors.As(err, &writeTO):
		cause = fmt.Sprintf("WriteTimeout (%s, %v)", writeTO.WriteType, writeTO.Consistency)
	case errors.As(err, &readTO):
		cause = fmt.Sprintf("ReadTimeout (%v)", readTO.Consistency)
	case errors.As(err, &casUnknown):
		cause = "CAS_WRITE_UNKNOWN"
	case errors.As(err, &reqErr):
		cause = fmt.Sprintf("server error %#x", reqErr.Code())
	case errors.Is(err, gocql.ErrNoConnections):
		cause = "no connections"
	case errors.Is(err, context.DeadlineExceeded):
		cause = "context deadline"
	case errors.Is(err, gocql.ErrTimeoutNoResponse):
		cause = "client timeout"
	case errors.Is(err, gocql.ErrConnectionClosed), errors.As(err, &netErr):
		cause = "connection broken"
	}
	if errors.Is(err, idem.ErrUnknownOutcome) {
		return "unknown outcome, " + cause
	}
	return cause
}

// TestClusterTwoNodesDown kills two of the three nodes, so that no key has a quorum, and checks
// every kind of call: none may succeed or report a result (a read must not return a stale or
// missing item, a write must not claim a conflict it cannot have read), each fails with an error
// that says why. Calls are made twice: at once after the kills (the survivor still believes
// the others alive and its requests time out), and again once the survivor refuses quorum
// requests as Unavailable, where every error must carry that Unavailable. Then both nodes
// return, calls succeed again, and the stored items are exactly those written before the
// outage: a Paxos round that cannot gather a quorum of promises proposes nothing, so none of
// the refused writes may have landed.
func TestClusterTwoNodesDown(t *testing.T) {
	c := testenv.CassandraCluster(t)
	s, ks := c.Keyspace(t)
	table := newTable(t, s, ks)
	st := newStore(t, s, table, cassandra.WithResolveTimeout(5*time.Second))
	ctx := t.Context()
	known := writeKnown(t, st)

	for _, n := range []int{2, 3} {
		c.Kill(t, n)
	}
	var errs errorKinds
	callsFail(t, st, known, &errs, nil)
	waitUnavailable(t, s, table)
	callsFail(t, st, known, &errs, func(err error) error {
		var u *gocql.RequestErrUnavailable
		if !errors.As(err, &u) {
			return fmt.Errorf("got %v, want an error carrying the coordinator's Unavailable", err)
		}
		return nil
	})
	errs.log(t)

	t0 := time.Now()
	var wg sync.WaitGroup
	startErrs := make([]error, 2)
	for i, n := range []int{2, 3} {
		wg.Go(func() { startErrs[i] = c.StartNode(ctx, n) })
	}
	wg.Wait()
	if err := errors.Join(startErrs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("nodes 2 and 3 restarted together in %v", time.Since(t0).Round(time.Millisecond))

	for key, want := range known {
		got, err := st.Get(ctx, key)
		if want == nil {
			if !errors.Is(err, idem.ErrNotFound) {
				t.Errorf("after the outage, Get(%q) = %+v, %v; want ErrNotFound (a refused write landed)", key, got, err)
			}
			continue
		}
		if err != nil || got.Version != want.Version || !bytes.Equal(got.Value, want.Value) {
			t.Errorf("after the outage, Get(%q) = %+v, %v; want %+v (a refused write landed)", key, got, err, *want)
		}
	}
	if _, err := st.PutIfAbsent(ctx, "absent", []byte("after"), 0); err != nil {
		t.Errorf("PutIfAbsent after the outage: %v", err)
	}
	if _, err := st.CompareAndSwap(ctx, "swapped", known["swapped"].Version, []byte("after"), 0); err != nil {
		t.Errorf("CompareAndSwap after the outage: %v", err)
	}
}

// writeKnown writes the items the outage must leave alone: "put" (a PutIfAbsent), "swapped" (a
// PutIfAbsent and a CompareAndSwap), "upserted" (an Upsert); "absent" is never written (nil).
func writeKnown(t *testing.T, st idem.Store) map[string]*idem.Item {
	t.Helper()
	ctx := t.Context()
	must := func(it idem.Item, err error) *idem.Item {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return &it
	}
	put := must(st.PutIfAbsent(ctx, "put", []byte("p1"), 0))
	sw := must(st.PutIfAbsent(ctx, "swapped", []byte("s1"), 0))
	sw = must(st.CompareAndSwap(ctx, "swapped", sw.Version, []byte("s2"), 0))
	up, _, err := st.Upsert(ctx, "upserted", []byte("u1"), 7, 0)
	return map[string]*idem.Item{"put": put, "swapped": sw, "upserted": must(up, err), "absent": nil}
}

// callsFail makes every kind of call on the known keys, each with a bounded context, and fails
// t for any that succeeds or returns a result instead of an error; check, when set, vets each
// error further.
func callsFail(t *testing.T, st idem.Store, known map[string]*idem.Item, errs *errorKinds, check func(error) error) {
	t.Helper()
	put, sw := known["put"], known["swapped"]
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := st.Get(ctx, "swapped"); return err }},
		{"Get absent", func(ctx context.Context) error { _, err := st.Get(ctx, "absent"); return err }},
		{"PutIfAbsent", func(ctx context.Context) error { _, err := st.PutIfAbsent(ctx, "absent", []byte("x"), 0); return err }},
		{"PutIfAbsent existing", func(ctx context.Context) error { _, err := st.PutIfAbsent(ctx, "put", []byte("x"), 0); return err }},
		{"CompareAndSwap", func(ctx context.Context) error {
			_, err := st.CompareAndSwap(ctx, "swapped", sw.Version, []byte("x"), 0)
			return err
		}},
		{"CompareAndSwap stale", func(ctx context.Context) error {
			_, err := st.CompareAndSwap(ctx, "swapped", sw.Version-1, []byte("x"), 0)
			return err
		}},
		{"CompareAndDelete", func(ctx context.Context) error { return st.CompareAndDelete(ctx, "put", put.Version) }},
		{"Upsert", func(ctx context.Context) error {
			_, _, err := st.Upsert(ctx, "upserted", []byte("x"), 100, 0)
			return err
		}},
		{"Upsert lower", func(ctx context.Context) error {
			_, _, err := st.Upsert(ctx, "upserted", []byte("x"), 1, 0)
			return err
		}},
	}
	for _, tc := range calls {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := tc.call(ctx)
		cancel()
		errs.add(tc.name, err)
		var ce *idem.ConflictError
		switch {
		case err == nil:
			t.Errorf("%s with two nodes down succeeded; want an error", tc.name)
		case errors.Is(err, idem.ErrNotFound), errors.As(err, &ce):
			t.Errorf("%s with two nodes down returned a result (%v); want an error", tc.name, err)
		case check != nil:
			if cerr := check(err); cerr != nil {
				t.Errorf("%s: %v", tc.name, cerr)
			}
		}
	}
}

// waitUnavailable waits until the surviving node refuses a QUORUM read of the table (whose
// keyspace has replication factor 3) as Unavailable: its failure detector has marked the two
// killed nodes down.
func waitUnavailable(t *testing.T, s *gocql.Session, table string) {
	t.Helper()
	t0 := time.Now()
	deadline := t0.Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		err := s.Query(`SELECT key FROM `+table+` WHERE key = ?`, "put").Consistency(gocql.Quorum).ExecContext(ctx)
		cancel()
		var u *gocql.RequestErrUnavailable
		if errors.As(err, &u) {
			t.Logf("the survivor refuses QUORUM as Unavailable %v after the kills", time.Since(t0).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Unavailable from the surviving node within 2 minutes; last: %v", err)
		}
		time.Sleep(500 * time.Millisecond) // polling a server-side state, not lining up a race
	}
}
