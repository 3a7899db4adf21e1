package cassandra

import (
	"context"
	"errors"
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
