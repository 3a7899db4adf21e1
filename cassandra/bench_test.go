package cassandra_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The benchmarks pair each Store operation with the hand-written gocql
// lightweight transaction a careful engineer would write for the same job
// (the same TTL, consistency levels and non-idempotent marking, MapScanCAS
// into a fresh map, but no expiry check, no unknown-outcome handling and no
// own-write recognition). Run them against testenv's Cassandra:
//
//	go test ./cassandra -run '^$' -bench . -benchtime 2s

type bench struct {
	session  *gocql.Session
	store    *cassandra.Store
	keyspace string
	table    string // the Store's table
	hand     string // the hand-written code's table
}

func newBench(b *testing.B) *bench {
	b.Helper()
	session, ks := testenv.Cassandra(b)
	table := newTable(b, session, ks)
	hand := ks + ".hand"
	err := session.Query(`CREATE TABLE IF NOT EXISTS ` + hand + ` (key text PRIMARY KEY, value blob, version bigint, owner blob)`).Exec()
	if err != nil {
		b.Fatal(err)
	}
	if err := session.AwaitSchemaAgreement(context.Background()); err != nil {
		b.Fatal(err)
	}
	return &bench{session: session, store: newStore(b, session, table), keyspace: ks, table: table, hand: hand}
}

func (h *bench) lwt(stmt string, args ...any) (bool, map[string]any, error) {
	return lwt(context.Background(), h.session, stmt, args...)
}

// seq makes keys unique across the repeated runs of a benchmark function.
var seq atomic.Int64

func newKey(prefix string) string { return fmt.Sprint(prefix, seq.Add(1)) }

var payload = []byte(`{"id":"pay_1","amount":1250,"currency":"EUR"}`)

func BenchmarkPutIfAbsent(b *testing.B) {
	h := newBench(b)
	ctx := context.Background()
	b.Run("Store", func(b *testing.B) {
		for range b.N {
			if _, err := h.store.PutIfAbsent(ctx, newKey("put/"), payload, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand", func(b *testing.B) {
		stmt := `INSERT INTO ` + h.hand + ` (key, value, version) VALUES (?, ?, 1) IF NOT EXISTS USING TTL ?`
		for range b.N {
			if applied, _, err := h.lwt(stmt, newKey("put/"), payload, 3600); err != nil || !applied {
				b.Fatal(applied, err)
			}
		}
	})
}

func BenchmarkPutIfAbsentConflict(b *testing.B) {
	h := newBench(b)
	ctx := context.Background()
	if _, err := h.store.PutIfAbsent(ctx, "dup", payload, time.Hour); err != nil {
		b.Fatal(err)
	}
	stmt := `INSERT INTO ` + h.hand + ` (key, value, version) VALUES (?, ?, 1) IF NOT EXISTS USING TTL ?`
	if _, _, err := h.lwt(stmt, "dup", payload, 3600); err != nil {
		b.Fatal(err)
	}
	b.Run("Store", func(b *testing.B) {
		for range b.N {
			if _, err := h.store.PutIfAbsent(ctx, "dup", payload, time.Hour); !errors.Is(err, idem.ErrConflict) {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand", func(b *testing.B) {
		for range b.N {
			applied, cur, err := h.lwt(stmt, "dup", payload, 3600)
			if err != nil || applied || cur["value"] == nil {
				b.Fatal(applied, err)
			}
		}
	})
}

func BenchmarkCompareAndSwap(b *testing.B) {
	h := newBench(b)
	ctx := context.Background()
	b.Run("Store", func(b *testing.B) {
		it, err := h.store.PutIfAbsent(ctx, newKey("cas/"), payload, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if it, err = h.store.CompareAndSwap(ctx, it.Key, it.Version, payload, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand", func(b *testing.B) {
		key := newKey("cas/")
		if _, _, err := h.lwt(`INSERT INTO `+h.hand+` (key, value, version) VALUES (?, ?, 1) IF NOT EXISTS USING TTL 3600`, key, payload); err != nil {
			b.Fatal(err)
		}
		stmt := `UPDATE ` + h.hand + ` USING TTL ? SET value = ?, version = ? WHERE key = ? IF version = ?`
		b.ResetTimer()
		for i := range b.N {
			v := int64(i + 1)
			if applied, _, err := h.lwt(stmt, 3600, payload, v+1, key, v); err != nil || !applied {
				b.Fatal(applied, err)
			}
		}
	})
}

func BenchmarkGet(b *testing.B) {
	h := newBench(b)
	ctx := context.Background()
	if _, err := h.store.PutIfAbsent(ctx, "get", payload, time.Hour); err != nil {
		b.Fatal(err)
	}
	if _, _, err := h.lwt(`INSERT INTO `+h.hand+` (key, value, version) VALUES (?, ?, 1) IF NOT EXISTS`, "get", payload); err != nil {
		b.Fatal(err)
	}
	b.Run("Store", func(b *testing.B) {
		for range b.N {
			if _, err := h.store.Get(ctx, "get"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand", func(b *testing.B) {
		for range b.N {
			var value []byte
			var version int64
			err := h.session.Query(`SELECT value, version FROM `+h.hand+` WHERE key = ?`, "get").
				Consistency(gocql.Serial).ScanContext(ctx, &value, &version)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDo is a first execution: claim, run, store the result (2 LWTs),
// beside the hand-written claim INSERT ... IF NOT EXISTS and the complete
// UPDATE ... IF owner = ?, at 1 and 16 concurrent callers.
func BenchmarkDo(b *testing.B) {
	h := newBench(b)
	fn := func(context.Context) ([]byte, error) { return payload, nil }
	claim := `INSERT INTO ` + h.hand + ` (key, owner, version) VALUES (?, ?, 1) IF NOT EXISTS USING TTL 60`
	complete := `UPDATE ` + h.hand + ` USING TTL 86400 SET value = ?, version = 2 WHERE key = ? IF owner = ?`
	h.compare(b, func(s *cassandra.Store) op {
		return func(ctx context.Context, _ int64) error {
			_, err := idem.Do(ctx, s, newKey("do/"), fn)
			return err
		}
	}, func(session *gocql.Session) op {
		return func(ctx context.Context, _ int64) error {
			key, owner := newKey("do/"), make([]byte, 16)
			rand.Read(owner)
			if applied, _, err := lwt(ctx, session, claim, key, owner); err != nil || !applied {
				return fmt.Errorf("claim: applied %v, %v", applied, err)
			}
			v, _ := fn(ctx)
			if applied, _, err := lwt(ctx, session, complete, v, key, owner); err != nil || !applied {
				return fmt.Errorf("complete: applied %v, %v", applied, err)
			}
			return nil
		}
	})
}

// replayKeys is how many keys the replay benchmarks spread their calls
// over, so that concurrent callers rarely contend for one partition's Paxos.
const replayKeys = 64

// BenchmarkDoReplay is a duplicate: the stored result, from the refused
// claim (1 LWT), beside the hand-written refused INSERT ... IF NOT EXISTS.
func BenchmarkDoReplay(b *testing.B) {
	h := newBench(b)
	ctx := context.Background()
	fn := func(context.Context) ([]byte, error) { return payload, nil }
	claim := `INSERT INTO ` + h.hand + ` (key, owner, version) VALUES (?, ?, 1) IF NOT EXISTS USING TTL 60`
	for i := range replayKeys {
		key := fmt.Sprint("replay/", i)
		if _, err := idem.Do(ctx, h.store, key, fn); err != nil {
			b.Fatal(err)
		}
		if _, _, err := lwt(ctx, h.session, claim, key, []byte("first")); err != nil {
			b.Fatal(err)
		}
	}
	h.compare(b, func(s *cassandra.Store) op {
		return func(ctx context.Context, i int64) error {
			v, err := idem.Do(ctx, s, fmt.Sprint("replay/", i%replayKeys), fn)
			if err == nil && !bytes.Equal(v, payload) {
				err = errors.New("wrong replayed result")
			}
			return err
		}
	}, func(session *gocql.Session) op {
		return func(ctx context.Context, i int64) error {
			owner := make([]byte, 16)
			rand.Read(owner)
			applied, cur, err := lwt(ctx, session, claim, fmt.Sprint("replay/", i%replayKeys), owner)
			if err != nil || applied || cur["owner"] == nil {
				return fmt.Errorf("replay: applied %v, %v", applied, err)
			}
			return nil
		}
	})
}

// lwt is the hand-written lightweight transaction: the Store's consistency
// levels, never resent by the driver, the current row in a fresh map.
func lwt(ctx context.Context, s *gocql.Session, stmt string, args ...any) (bool, map[string]any, error) {
	m := map[string]any{}
	applied, err := s.Query(stmt, args...).
		Consistency(gocql.Quorum).SerialConsistency(gocql.Serial).Idempotent(false).
		MapScanCASContext(ctx, m)
	return applied, m, err
}

// compare runs idemkit (lib) and the hand-written code (hand) at 1 and 16
// callers; see sideBySide. The requests are counted on a second session
// with a query observer, in an untimed block, so that the observer costs
// the timed blocks nothing.
func (h *bench) compare(b *testing.B, lib func(*cassandra.Store) op, hand func(*gocql.Session) op) {
	b.Helper()
	var requests atomic.Int64
	cluster := gocql.NewCluster(testenv.CassandraHosts(b)...)
	cluster.Keyspace = h.keyspace
	cluster.Timeout, cluster.ConnectTimeout = testenv.CassandraTimeout, testenv.CassandraTimeout
	cluster.QueryObserver = requestCounter{&requests}
	counted, err := cluster.CreateSession()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(counted.Close)
	countedStore := newStore(b, counted, h.table)
	for _, callers := range []int{1, 16} {
		b.Run(fmt.Sprint("callers=", callers), func(b *testing.B) {
			libReq := countRequests(b, &requests, lib(countedStore))
			handReq := countRequests(b, &requests, hand(counted))
			libT, handT := sideBySide(b, callers, nil, lib(h.store), hand(h.session))
			libT.report(b, libReq, handReq, handT)
		})
	}
}

type requestCounter struct{ n *atomic.Int64 }

func (o requestCounter) ObserveQuery(context.Context, gocql.ObservedQuery) { o.n.Add(1) }

// countRequests returns the requests per call of f, over one block.
func countRequests(b *testing.B, n *atomic.Int64, f op) float64 {
	b.Helper()
	before := n.Load()
	for i := range int64(block) {
		if err := f(context.Background(), i); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n.Load()-before) / block
}

// The side-by-side harness. The same code is in the cassandra and dynamo
// benchmarks (each package's tests are their own).

// op is one call of a benchmarked operation; i numbers the calls of a side.
type op func(ctx context.Context, i int64) error

// block is the calls per side in one block: sideBySide alternates blocks
// of idemkit and of the hand-written code, so that drift on the shared
// machine (the server's load, other processes) hits both alike.
const block = 40

// tally is what one side used over its blocks.
type tally struct {
	calls    int64
	requests int64 // counted by sideBySide's count, if any
	wall     time.Duration
	cpu      time.Duration // user+system of the whole process (client only: the server is another)
	allocs   uint64
}

// sideBySide runs lib and hand alternately in blocks until each has made
// at least b.N calls, each block spread over callers goroutines (at 16
// callers a block is 10 calls per caller). count, if not nil, returns the
// requests sent so far. Go's own ns/op is the sum of both sides; read the
// metrics report adds.
func sideBySide(b *testing.B, callers int, count func() int64, lib, hand op) (libT, handT tally) {
	b.Helper()
	per := max(block/callers, 10)
	var libN, handN atomic.Int64
	for i := 0; libT.calls < int64(b.N) || handT.calls < int64(b.N); i++ {
		if i%2 == 0 {
			libT.run(b, callers, per, count, &libN, lib)
			handT.run(b, callers, per, count, &handN, hand)
		} else {
			handT.run(b, callers, per, count, &handN, hand)
			libT.run(b, callers, per, count, &libN, lib)
		}
	}
	return libT, handT
}

func (t *tally) run(b *testing.B, callers, per int, count func() int64, next *atomic.Int64, f op) {
	ctx := context.Background()
	errs := make(chan error, callers)
	var r0 int64
	if count != nil {
		r0 = count()
	}
	a0, c0, t0 := allocs(), cpuTime(), time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range per {
				if err := f(ctx, next.Add(1)-1); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	t.wall += time.Since(t0)
	t.cpu += cpuTime() - c0
	t.allocs += allocs() - a0
	t.calls += int64(callers * per)
	if count != nil {
		t.requests += count() - r0
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// report adds per call: idemkit's wall and CPU time, allocations and
// requests (ns/op, cpu-ns/op, allocs, req/op), the same for the
// hand-written code (hand-...), and the ratios idemkit/hand (wall-x,
// cpu-x, req-x).
func (t tally) report(b *testing.B, libReq, handReq float64, hand tally) {
	per := func(x float64, n int64) float64 { return x / float64(n) }
	b.ReportMetric(per(float64(t.wall), t.calls), "wall-ns/op")
	b.ReportMetric(per(float64(hand.wall), hand.calls), "hand-wall-ns/op")
	b.ReportMetric(per(float64(t.cpu), t.calls), "cpu-ns/op")
	b.ReportMetric(per(float64(hand.cpu), hand.calls), "hand-cpu-ns/op")
	b.ReportMetric(per(float64(t.allocs), t.calls), "lib-allocs/op")
	b.ReportMetric(per(float64(hand.allocs), hand.calls), "hand-allocs/op")
	b.ReportMetric(libReq, "req/op")
	b.ReportMetric(handReq, "hand-req/op")
	b.ReportMetric(per(float64(t.wall), t.calls)/per(float64(hand.wall), hand.calls), "wall-x")
	b.ReportMetric(per(float64(t.cpu), t.calls)/per(float64(hand.cpu), hand.calls), "cpu-x")
	b.ReportMetric(libReq/handReq, "req-x")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}

// allocs is the number of heap objects the process has allocated.
func allocs() uint64 {
	s := make([]metrics.Sample, 1)
	copy(s, allocSample)
	metrics.Read(s)
	return s[0].Value.Uint64()
}
