package cassandra

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// rawRow reads key's row as Cassandra holds it, bypassing the Store's
// client-side expiry: whether a row (or just a row marker) exists, and the
// remaining TTL of its value cell.
func rawRow(t *testing.T, session *gocql.Session, table, key string) (exists bool, ttl int) {
	t.Helper()
	var k string
	var cellTTL *int
	err := session.Query("SELECT key, TTL(value) FROM "+table+" WHERE key = ?", key).
		Consistency(gocql.Serial).Scan(&k, &cellTTL)
	if errors.Is(err, gocql.ErrNotFound) {
		return false, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	if cellTTL != nil {
		ttl = *cellTTL
	}
	return true, ttl
}

func realTable(t *testing.T) (*gocql.Session, string) {
	t.Helper()
	session, ks := testenv.Cassandra(t)
	table := ks + ".ttl"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := CreateTable(ctx, session, table); err != nil {
		t.Fatal(err)
	}
	return session, table
}

// TestServerTTL checks what Cassandra itself holds: every write carries its
// own USING TTL (a second more than the item's ExpiresAt needs), ttl <= 0
// stores no TTL, and once the TTL passes the row is gone on the server, not
// just hidden by the client. In particular no row marker outlives the
// cells: an item stored without TTL and then swapped to a short one
// disappears entirely (an INSERT would have left an empty row behind that
// blocks IF NOT EXISTS forever).
func TestServerTTL(t *testing.T) {
	t.Parallel()
	session, table := realTable(t)
	s, err := New(session, table)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	hour, err := s.PutIfAbsent(ctx, "hour", []byte("x"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, ttl := rawRow(t, session, table, "hour"); ttl < 3600 || ttl > 3602 {
		t.Errorf("TTL(value) after a 1h PutIfAbsent: got %d, want 3600..3602", ttl)
	}
	if _, err := s.CompareAndSwap(ctx, "hour", hour.Version, []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if exists, ttl := rawRow(t, session, table, "hour"); !exists || ttl != 0 {
		t.Errorf("after CompareAndSwap with ttl 0: got exists %v, TTL %d; want a row without TTL", exists, ttl)
	}

	forever, err := s.PutIfAbsent(ctx, "forever-then-short", []byte("x"), 0)
	if err != nil {
		t.Fatal(err)
	}
	it, err := s.CompareAndSwap(ctx, "forever-then-short", forever.Version, []byte("y"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Upsert(ctx, "upsert-short", []byte("u"), 3, time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(it.ExpiresAt) + 1100*time.Millisecond) // the server's TTL is a second longer
	for _, key := range []string{"forever-then-short", "upsert-short"} {
		if exists, _ := rawRow(t, session, table, key); exists {
			t.Errorf("%s: a row is left on the server after its TTL", key)
		}
	}
	if _, err := s.PutIfAbsent(ctx, "forever-then-short", []byte("again"), 0); err != nil {
		t.Errorf("PutIfAbsent after expiry: %v", err)
	}
}

// TestClientClockAhead: a client whose clock runs ahead sees items expire
// before the server deletes them. For that client they are absent for every
// operation, and the statements that replace an expired row run against a
// real server.
func TestClientClockAhead(t *testing.T) {
	t.Parallel()
	session, table := realTable(t)
	ctx := context.Background()
	s, err := New(session, table)
	if err != nil {
		t.Fatal(err)
	}
	ahead, err := New(session, table, withClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"get", "put", "cas", "cad", "upsert"} {
		if _, _, err := s.Upsert(ctx, key, []byte("old"), 5, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ahead.Get(ctx, "get"); !errors.Is(err, idem.ErrNotFound) {
		t.Errorf("Get: got %v, want ErrNotFound", err)
	}
	it, err := ahead.PutIfAbsent(ctx, "put", []byte("new"), 0)
	if err != nil || it.Version <= 5 || string(it.Value) != "new" {
		t.Errorf("PutIfAbsent over a row expired by the client's clock: got %+v, %v; want new at a fresh version", it, err)
	}
	_, err = ahead.CompareAndSwap(ctx, "cas", 5, []byte("new"), 0)
	var ce *idem.ConflictError
	if !errors.As(err, &ce) || ce.Exists {
		t.Errorf("CompareAndSwap of an expired row: got %v, want a conflict with Exists false", err)
	}
	if err := ahead.CompareAndDelete(ctx, "cad", 5); !errors.As(err, &ce) || ce.Exists {
		t.Errorf("CompareAndDelete of an expired row: got %v, want a conflict with Exists false", err)
	}
	up, applied, err := ahead.Upsert(ctx, "upsert", []byte("new"), 2, 0)
	if err != nil || !applied || up.Version != 2 {
		t.Errorf("Upsert at a lower version over an expired row: got %+v, applied %v, %v; want applied v2", up, applied, err)
	}
	// The refused writes changed nothing on the server.
	for _, key := range []string{"cas", "cad"} {
		got, err := s.Get(ctx, key)
		if err != nil || got.Version != 5 || string(got.Value) != "old" {
			t.Errorf("%s after refused writes: got %+v, %v; want old v5", key, got, err)
		}
	}
}

// TestTTLPast2038: this Cassandra (5.0 in its default
// storage_compatibility_mode, as testenv runs it) refuses a TTL that ends
// after 2038-01-19T03:14:06Z, though it is under 20 years. The Store
// rejects such a ttl with ErrInvalid, naming the limit, before sending
// anything; a ttl a minute inside its limit is accepted by the server.
func TestTTLPast2038(t *testing.T) {
	t.Parallel()
	session, table := realTable(t)
	s, err := New(session, table)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The limit is the server's: the statement the Store would send, with a
	// TTL a few seconds past it, is refused.
	over := int(time.Until(serverExpiryLimit)/time.Second) + 5
	err = session.Query("UPDATE "+table+" USING TTL ? SET value = 0x, version = 1, expires_at = 0, write_id = 0x WHERE key = ? IF version = null", over, "raw").Exec()
	var invalid *gocql.RequestErrInvalid
	if !errors.As(err, &invalid) {
		t.Fatalf("a TTL ending past %v: got %v, want the server's InvalidRequest (is the node in storage_compatibility_mode NONE?)", serverExpiryLimit, err)
	}

	// Under 20 years both: past the server's limit, and inside it but
	// within the Store's margin for clock skew.
	for _, ttl := range []time.Duration{time.Until(serverExpiryLimit) + time.Hour, time.Until(serverExpiryLimit) - time.Hour} {
		for _, tc := range []struct {
			name string
			call func() error
		}{
			{"PutIfAbsent", func() error { _, err := s.PutIfAbsent(ctx, "late", []byte("x"), ttl); return err }},
			{"CompareAndSwap", func() error { _, err := s.CompareAndSwap(ctx, "late", 1, []byte("x"), ttl); return err }},
			{"Upsert", func() error { _, _, err := s.Upsert(ctx, "late", []byte("x"), 1, ttl); return err }},
		} {
			err := tc.call()
			if !errors.Is(err, idem.ErrInvalid) || errors.As(err, &invalid) {
				t.Errorf("%s with a ttl ending at %v: got %v, want one matching idem.ErrInvalid, before sending", tc.name, time.Now().Add(ttl).UTC(), err)
			} else if !strings.Contains(err.Error(), "2038-01-19T03:14:06Z") {
				t.Errorf("%s: the error %q does not name the limit", tc.name, err)
			}
		}
	}
	if _, err := s.Get(ctx, "late"); !errors.Is(err, idem.ErrNotFound) {
		t.Errorf("after the rejected writes: got %v, want nothing stored", err)
	}

	ok := time.Until(latestExpiry) - time.Minute
	it, err := s.PutIfAbsent(ctx, "late", []byte("x"), ok)
	if err != nil {
		t.Fatalf("PutIfAbsent with a ttl of %v, inside the limit: %v", ok, err)
	}
	if exists, got := rawRow(t, session, table, "late"); !exists || got < int(ok/time.Second) {
		t.Errorf("server TTL: got %d (exists %v), want at least %d", got, exists, int(ok/time.Second))
	}
	if _, err := s.CompareAndSwap(ctx, "late", it.Version, []byte("y"), ok); err != nil {
		t.Errorf("CompareAndSwap with a ttl inside the limit: %v", err)
	}
}

// TestRowsWithNulls: rows written with plain CQL, outside the Store, whose
// value, version or expires_at is NULL (the Store always writes all three).
// Such a row is not an item: Get reports it absent, CompareAndSwap and
// CompareAndDelete find no item (a conflict with Exists false), and
// PutIfAbsent and Upsert replace it with an item, which then behaves as
// any other.
func TestRowsWithNulls(t *testing.T) {
	t.Parallel()
	session, table := realTable(t)
	s, err := New(session, table)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		insert string // plain CQL; ? is the key
	}{
		{"no expires_at", "INSERT INTO " + table + " (key, value, version) VALUES (?, 0x6f6c64, 1)"},
		{"no expires_at, empty value", "INSERT INTO " + table + " (key, value, version, write_id) VALUES (?, 0x, 1, 0x00)"},
		{"no value", "INSERT INTO " + table + " (key, version, expires_at) VALUES (?, 1, 9223372036854775807)"},
		{"no version", "INSERT INTO " + table + " (key, value, expires_at, write_id) VALUES (?, 0x6f6c64, 9223372036854775807, 0x00)"},
		{"only write_id", "INSERT INTO " + table + " (key, write_id) VALUES (?, 0x00)"},
		{"row marker only", "INSERT INTO " + table + " (key) VALUES (?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			put, up := "nulls/"+tc.name+"/put", "nulls/"+tc.name+"/upsert"
			for _, k := range []string{put, up} {
				if err := session.Query(tc.insert, k).Exec(); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := s.Get(ctx, put); !errors.Is(err, idem.ErrNotFound) {
				t.Errorf("Get: got %+v, %v; want ErrNotFound", got, err)
			}
			var ce *idem.ConflictError
			if _, err := s.CompareAndSwap(ctx, put, 1, []byte("new"), 0); !errors.As(err, &ce) || ce.Exists {
				t.Errorf("CompareAndSwap(1): got %v, want a conflict with Exists false", err)
			}
			if err := s.CompareAndDelete(ctx, put, 1); !errors.As(err, &ce) || ce.Exists {
				t.Errorf("CompareAndDelete(1): got %v, want a conflict with Exists false", err)
			}

			it, err := s.PutIfAbsent(ctx, put, []byte("new"), time.Hour)
			if err != nil {
				t.Fatalf("PutIfAbsent: %v", err)
			}
			if got, err := s.Get(ctx, put); err != nil || string(got.Value) != "new" || got.Version != it.Version {
				t.Errorf("Get after PutIfAbsent: got %+v, %v; want new v%d", got, err, it.Version)
			}
			next, err := s.CompareAndSwap(ctx, put, it.Version, []byte("next"), time.Hour)
			if err != nil {
				t.Fatalf("CompareAndSwap after PutIfAbsent: %v", err)
			}
			if err := s.CompareAndDelete(ctx, put, next.Version); err != nil {
				t.Errorf("CompareAndDelete after CompareAndSwap: %v", err)
			}

			if got, applied, err := s.Upsert(ctx, up, []byte("new"), 1, time.Hour); err != nil || !applied || got.Version != 1 {
				t.Fatalf("Upsert at version 1: got %+v, applied %v, %v; want applied", got, applied, err)
			}
			if got, err := s.Get(ctx, up); err != nil || string(got.Value) != "new" || got.Version != 1 {
				t.Errorf("Get after Upsert: got %+v, %v; want new v1", got, err)
			}
		})
	}
}
