package cassandra_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/internal/benchtest"

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
	h.compare(b, func(s *cassandra.Store) benchtest.Op {
		return func(ctx context.Context, _ int64) error {
			_, err := idem.Do(ctx, s, newKey("do/"), fn)
			return err
		}
	}, func(session *gocql.Session) benchtest.Op {
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
	h.compare(b, func(s *cassandra.Store) benchtest.Op {
		return func(ctx context.Context, i int64) error {
			v, err := idem.Do(ctx, s, fmt.Sprint("replay/", i%replayKeys), fn)
			if err == nil && !bytes.Equal(v, payload) {
				err = errors.New("wrong replayed result")
			}
			return err
		}
	}, func(session *gocql.Session) benchtest.Op {
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
// callers; see benchtest.SideBySide. The requests are counted on a second session
// with a query observer, in an untimed block, so that the observer costs
// the timed blocks nothing.
func (h *bench) compare(b *testing.B, lib func(*cassandra.Store) benchtest.Op, hand func(*gocql.Session) benchtest.Op) {
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
			libT, handT := benchtest.SideBySide(b, callers, nil, lib(h.store), hand(h.session))
			libT.Report(b, libReq, handReq, handT)
		})
	}
}

type requestCounter struct{ n *atomic.Int64 }

func (o requestCounter) ObserveQuery(context.Context, gocql.ObservedQuery) { o.n.Add(1) }

// countRequests returns the requests per call of f, over one block.
func countRequests(b *testing.B, n *atomic.Int64, f benchtest.Op) float64 {
	b.Helper()
	before := n.Load()
	for i := range int64(benchtest.Block) {
		if err := f(context.Background(), i); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n.Load()-before) / benchtest.Block
}
