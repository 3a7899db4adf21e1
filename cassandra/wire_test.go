package cassandra_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
	"github.com/idemkit/idemkit/internal/testenv"
)

// observer counts what the driver sends, by kind, and checks how each
// lightweight transaction is configured.
type observer struct {
	t      testing.TB
	commit gocql.Consistency
	serial gocql.Consistency

	mu          sync.Mutex
	lwts, reads int
}

func (o *observer) ObserveQuery(_ context.Context, q gocql.ObservedQuery) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case strings.Contains(q.Statement, " IF "):
		o.lwts++
		if q.Query.IsIdempotent() {
			o.t.Errorf("LWT marked idempotent (the driver may resend it): %s", q.Statement)
		}
		if c := q.Query.GetConsistency(); c != o.commit {
			o.t.Errorf("LWT commit consistency: got %v, want %v", c, o.commit)
		}
		if c, ok := q.Query.GetSerialConsistency(); !ok || c != o.serial {
			o.t.Errorf("LWT serial consistency: got %v, want %v", c, o.serial)
		}
	case strings.HasPrefix(q.Statement, "SELECT") && strings.Contains(q.Statement, " value, version, expires_at, write_id "):
		o.reads++
		if c := q.Query.GetConsistency(); c != o.serial {
			o.t.Errorf("read consistency: got %v, want %v", c, o.serial)
		}
	}
}

// take returns the counts since the last call.
func (o *observer) take() (lwts, reads int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	lwts, reads = o.lwts, o.reads
	o.lwts, o.reads = 0, 0
	return lwts, reads
}

func observedSession(t testing.TB, o *observer, config func(*gocql.ClusterConfig)) *gocql.Session {
	t.Helper()
	cluster := gocql.NewCluster(testenv.CassandraHosts(t)...)
	cluster.QueryObserver = o
	cluster.Timeout = 10 * time.Second
	if config != nil {
		config(cluster)
	}
	s, err := cluster.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestRoundTrips counts the lightweight transactions each operation sends,
// as the driver sees them: the floor the design promises (a first Do is 2
// writes, a duplicate 1) and one LWT per kernel write.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	admin, ks := testenv.Cassandra(t)
	for _, tc := range []struct {
		name           string
		opts           []cassandra.Option
		commit, serial gocql.Consistency
	}{
		{"defaults", nil, gocql.Quorum, gocql.Serial},
		{"local", []cassandra.Option{cassandra.WithSerialConsistency(gocql.LocalSerial), cassandra.WithCommitConsistency(gocql.LocalQuorum)}, gocql.LocalQuorum, gocql.LocalSerial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := newTable(t, admin, ks)
			o := &observer{t: t, commit: tc.commit, serial: tc.serial}
			s := newStore(t, observedSession(t, o, nil), table, tc.opts...)
			ctx := context.Background()
			check := func(what string, wantLWTs, wantReads int) {
				t.Helper()
				if lwts, reads := o.take(); lwts != wantLWTs || reads != wantReads {
					t.Errorf("%s: got %d LWTs and %d reads, want %d and %d", what, lwts, reads, wantLWTs, wantReads)
				}
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			key := func(s string) string { return tc.name + "/" + s }

			charge := func(context.Context) (string, error) { return "pay_1", nil }
			_, err := idem.Do(ctx, s, key("do"), charge)
			must(err)
			check("first Do", 2, 0)
			got, err := idem.Do(ctx, s, key("do"), func(context.Context) (string, error) { return "ran again", nil })
			must(err)
			if got != "pay_1" {
				t.Errorf("duplicate Do: got %q; want pay_1 replayed", got)
			}
			check("duplicate Do", 1, 0)

			k, err := s.PutIfAbsent(ctx, key("k"), []byte("a"), time.Hour)
			must(err)
			check("PutIfAbsent", 1, 0)
			_, err = s.PutIfAbsent(ctx, key("k"), []byte("b"), time.Hour)
			if !errors.Is(err, idem.ErrConflict) {
				t.Fatalf("second PutIfAbsent: %v", err)
			}
			check("PutIfAbsent conflict", 1, 0)
			_, err = s.CompareAndSwap(ctx, key("k"), k.Version, []byte("c"), time.Hour)
			must(err)
			check("CompareAndSwap", 1, 0)
			_, err = s.CompareAndSwap(ctx, key("k"), k.Version, []byte("d"), time.Hour)
			if !errors.Is(err, idem.ErrConflict) {
				t.Fatalf("stale CompareAndSwap: %v", err)
			}
			check("CompareAndSwap conflict", 1, 0)
			_, err = s.Get(ctx, key("k"))
			must(err)
			check("Get", 0, 1)
			must(s.CompareAndDelete(ctx, key("k"), k.Version+1))
			check("CompareAndDelete", 1, 0)

			_, _, err = s.Upsert(ctx, key("u"), []byte("u1"), 1, time.Hour)
			must(err)
			check("Upsert of an absent key", 2, 0)
			_, _, err = s.Upsert(ctx, key("u"), []byte("u5"), 5, time.Hour)
			must(err)
			check("Upsert at a higher version", 1, 0)
			_, applied, err := s.Upsert(ctx, key("u"), []byte("u3"), 3, time.Hour)
			must(err)
			if applied {
				t.Error("Upsert at a lower version applied")
			}
			check("Upsert at a lower version", 1, 0)
		})
	}
}

// TestLostOnTheWire loses a lightweight transaction's request or response
// in a TCP proxy between the driver and a real Cassandra. When the write
// reached the server (the response is dropped, or the connection is closed
// before it), the SERIAL read finds the write's own write_id: applied,
// exactly once. When the request never arrived (dropped, or its connection
// closed before it was forwarded), nothing proves either outcome and the
// store sends nothing again: ErrUnknownOutcome, and the row is as it was. A CompareAndDelete leaves nothing to recognise: unknown
// either way.
func TestLostOnTheWire(t *testing.T) {
	t.Parallel()
	admin, ks := testenv.Cassandra(t)
	table := newTable(t, admin, ks)
	plain := newStore(t, admin, table)
	p := newArmedProxy(t)
	const clientTimeout = 1500 * time.Millisecond
	s := newStore(t, proxiedSession(t, p.Proxy, clientTimeout), table)

	for _, tc := range []struct {
		name     string
		fault    faultproxy.Fault
		deadline time.Duration // a caller's deadline shorter than the driver's timeout; 0: none
		reached  bool          // the request reached the server
	}{
		{"response dropped, client timeout", faultproxy.DropResponse, 0, true},
		{"response dropped, caller's deadline", faultproxy.DropResponse, 500 * time.Millisecond, true},
		{"connection closed before the response", faultproxy.CutAtResponse, 0, true},
		{"request dropped", faultproxy.DropRequest, 0, false},
		{"connection closed before the request", faultproxy.CutNow, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, o := range []struct {
				name   string
				call   func(ctx context.Context, key string) (idem.Item, error)
				before idem.Item // stored before the call (Version 0: absent)
				after  idem.Item // stored once the call applied (Version 0: absent; -1: a fresh version)
			}{
				{"PutIfAbsent", func(ctx context.Context, key string) (idem.Item, error) {
					return s.PutIfAbsent(ctx, key, []byte("new"), time.Hour)
				}, idem.Item{}, idem.Item{Value: []byte("new"), Version: -1}},
				{"CompareAndSwap", func(ctx context.Context, key string) (idem.Item, error) {
					return s.CompareAndSwap(ctx, key, 3, []byte("new"), time.Hour)
				}, idem.Item{Value: []byte("old"), Version: 3}, idem.Item{Value: []byte("new"), Version: 4}},
				{"CompareAndDelete", func(ctx context.Context, key string) (idem.Item, error) {
					return idem.Item{}, s.CompareAndDelete(ctx, key, 3)
				}, idem.Item{Value: []byte("old"), Version: 3}, idem.Item{}},
				{"Upsert", func(ctx context.Context, key string) (idem.Item, error) {
					it, applied, err := s.Upsert(ctx, key, []byte("new"), 7, time.Hour)
					if err == nil && !applied {
						err = fmt.Errorf("Upsert over a lower version: not applied")
					}
					return it, err
				}, idem.Item{Value: []byte("old"), Version: 3}, idem.Item{Value: []byte("new"), Version: 7}},
			} {
				t.Run(o.name, func(t *testing.T) {
					key := "wire/" + tc.name + "/" + o.name
					ctx := context.Background()
					if _, err := s.Get(ctx, key); !errors.Is(err, idem.ErrNotFound) { // prepares the statements
						t.Fatalf("Get: %v", err)
					}
					if o.before.Version > 0 {
						if _, _, err := plain.Upsert(ctx, key, o.before.Value, o.before.Version, time.Hour); err != nil {
							t.Fatal(err)
						}
					}
					cctx := ctx
					if tc.deadline > 0 {
						var cancel context.CancelFunc
						cctx, cancel = context.WithTimeout(ctx, tc.deadline)
						defer cancel()
					}
					before := p.Stats()
					p.arm(tc.fault)
					start := time.Now()
					it, err := o.call(cctx, key)
					waitApplied(t, p.Proxy, before, tc.fault)
					want := o.before
					if tc.reached {
						want = o.after
					}
					if !tc.reached || o.name == "CompareAndDelete" {
						if !errors.Is(err, idem.ErrUnknownOutcome) {
							t.Fatalf("got %v, want ErrUnknownOutcome", err)
						}
					} else {
						if err != nil {
							t.Fatalf("got %v, want success", err)
						}
						if want.Version < 0 { // fresh: at least the clock at the call, in µs
							if it.Version < start.Add(-time.Second).UnixMicro() { // the process clock may drift a little from the wall clock
								t.Errorf("returned version %d, want a fresh one (at least %d)", it.Version, start.UnixMicro())
							}
							want.Version = it.Version
						}
						if string(it.Value) != string(want.Value) || it.Version != want.Version {
							t.Errorf("returned %q v%d, want %q v%d", it.Value, it.Version, want.Value, want.Version)
						}
					}
					got, err := plain.Get(ctx, key)
					switch {
					case want.Version == 0 && !errors.Is(err, idem.ErrNotFound):
						t.Errorf("stored %q v%d (%v), want nothing", got.Value, got.Version, err)
					case want.Version > 0 && (err != nil || string(got.Value) != string(want.Value) || got.Version != want.Version):
						t.Errorf("stored %q v%d (%v), want %q v%d: applied exactly once", got.Value, got.Version, err, want.Value, want.Version)
					}
					t.Logf("settled in %v", time.Since(start).Round(time.Millisecond))
				})
			}
		})
	}
}

// TestLostRequestCallerGone: the request is lost and the caller's deadline
// passes meanwhile. The SERIAL read still runs, detached from the
// cancellation, and does not show the write: the store says the outcome is
// unknown (the request might still be in flight), and nothing is stored.
func TestLostRequestCallerGone(t *testing.T) {
	t.Parallel()
	admin, ks := testenv.Cassandra(t)
	table := newTable(t, admin, ks)
	plain := newStore(t, admin, table)
	p := newArmedProxy(t)
	s := newStore(t, proxiedSession(t, p.Proxy, 10*time.Second), table)
	ctx, key := context.Background(), "gone"
	if _, err := s.Get(ctx, key); !errors.Is(err, idem.ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	before := p.Stats()
	p.arm(faultproxy.DropRequest)
	_, err := s.PutIfAbsent(cctx, key, []byte("new"), time.Hour)
	waitApplied(t, p.Proxy, before, faultproxy.DropRequest)
	if !errors.Is(err, idem.ErrUnknownOutcome) || !strings.Contains(err.Error(), strconv.Quote(key)) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrUnknownOutcome for %q wrapping the deadline", err, key)
	}
	if _, err := plain.Get(ctx, key); !errors.Is(err, idem.ErrNotFound) {
		t.Fatalf("Get after the lost request: got %v, want ErrNotFound", err)
	}
}

// TestLinearizableLossyWire runs idemtest.Linearizable (random concurrent
// kernel operations, each key's history checked against the model with
// porcupine) on a store whose every connection to Cassandra, but the
// driver's control connection, goes through a proxy that forwards each
// request (QUERY, PREPARE, EXECUTE, BATCH) and then drops about 7% of the
// responses (the driver times out) and, for about 1%, closes the
// connection when the response comes (every request in flight on it is
// cut). Writes of unknown outcome
// count as "may or may not have happened"; everything the store reports as
// applied or refused must fit one sequential order.
func TestLinearizableLossyWire(t *testing.T) {
	t.Parallel()
	admin, ks := testenv.Cassandra(t)
	table := newTable(t, admin, ks)
	p := newProxy(t, faultproxy.Config{Drop: 0.07, CutAtResponse: 0.01})
	p.SetFaults(false)
	s := newStore(t, proxiedSession(t, p, 400*time.Millisecond), table, cassandra.WithResolveTimeout(5*time.Second))
	if _, err := s.Get(context.Background(), "warm-up"); !errors.Is(err, idem.ErrNotFound) { // prepares the read
		t.Fatalf("Get: %v", err)
	}
	t.Logf("proxy seed %d", p.Seed())
	p.SetFaults(true)
	start := time.Now()
	idemtest.Linearizable(t, s, idemtest.LinearConfig{Clients: 6, Keys: 3, Ops: 40, Rounds: 4, Timeout: 8 * time.Second})
	st := p.Stats()
	t.Logf("%v: the proxy dropped %d responses and cut %d connections", time.Since(start).Round(time.Millisecond), st.Dropped, st.CutAtResponse)
	if st.Dropped == 0 || st.CutAtResponse == 0 {
		t.Errorf("the proxy dropped %d responses and cut %d connections: the test did not test what it says", st.Dropped, st.CutAtResponse)
	}
}
