package cassandra_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
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
	session *gocql.Session
	store   *cassandra.Store
	hand    string // the hand-written code's table
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
	return &bench{session: session, store: newStore(b, session, table), hand: hand}
}

func (h *bench) lwt(stmt string, args ...any) (bool, map[string]any, error) {
	m := map[string]any{}
	applied, err := h.session.Query(stmt, args...).
		Consistency(gocql.Quorum).SerialConsistency(gocql.Serial).Idempotent(false).
		MapScanCAS(m)
	return applied, m, err
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

// BenchmarkDo is a first execution: claim, run, store the result.
func BenchmarkDo(b *testing.B) {
	h := newBench(b)
	ctx := context.Background()
	fn := func(context.Context) ([]byte, error) { return payload, nil }
	b.Run("Store", func(b *testing.B) {
		for range b.N {
			if _, err := idem.Do(ctx, h.store, newKey("do/"), fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand", func(b *testing.B) {
		claim := `INSERT INTO ` + h.hand + ` (key, owner, version) VALUES (?, ?, 1) IF NOT EXISTS USING TTL 60`
		complete := `UPDATE ` + h.hand + ` USING TTL 86400 SET value = ?, version = 2 WHERE key = ? IF owner = ?`
		for range b.N {
			key, owner := newKey("do/"), make([]byte, 16)
			rand.Read(owner)
			if applied, _, err := h.lwt(claim, key, owner); err != nil || !applied {
				b.Fatal(applied, err)
			}
			v, _ := fn(ctx)
			if applied, _, err := h.lwt(complete, v, key, owner); err != nil || !applied {
				b.Fatal(applied, err)
			}
		}
	})
}

// BenchmarkDoReplay is a duplicate: the stored result, in one round trip.
func BenchmarkDoReplay(b *testing.B) {
	h := newBench(b)
	ctx := context.Background()
	fn := func(context.Context) ([]byte, error) { return payload, nil }
	if _, err := idem.Do(ctx, h.store, "replay", fn); err != nil {
		b.Fatal(err)
	}
	claim := `INSERT INTO ` + h.hand + ` (key, owner, version) VALUES (?, ?, 1) IF NOT EXISTS USING TTL 60`
	if _, _, err := h.lwt(claim, "replay", []byte("first")); err != nil {
		b.Fatal(err)
	}
	b.Run("Store", func(b *testing.B) {
		for range b.N {
			if _, err := idem.Do(ctx, h.store, "replay", fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand", func(b *testing.B) {
		owner := make([]byte, 16)
		for range b.N {
			rand.Read(owner)
			applied, cur, err := h.lwt(claim, "replay", owner)
			if err != nil || applied || cur["owner"] == nil {
				b.Fatal(applied, err)
			}
		}
	})
}
