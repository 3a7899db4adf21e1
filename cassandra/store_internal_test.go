package cassandra

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/idem"
)

func TestExpiry(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		now     time.Time
		ttl     time.Duration
		wantTTL int
		wantAt  time.Time // zero: never
	}{
		{"no ttl", base, 0, 0, time.Time{}},
		{"negative ttl", base, -time.Second, 0, time.Time{}},
		{"whole seconds", base, 10 * time.Second, 11, base.Add(10 * time.Second)},
		{"sub-second now", base.Add(300 * time.Millisecond), 10 * time.Second, 12, base.Add(11 * time.Second)},
		{"sub-second ttl", base, 1500 * time.Millisecond, 3, base.Add(2 * time.Second)},
		{"tiny ttl", base.Add(999 * time.Millisecond), time.Nanosecond, 2, base.Add(time.Second)},
		{"max ttl", base, MaxTTL, int(MaxTTL / time.Second), base.Add(MaxTTL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secs, at := expiry(tc.now, tc.ttl)
			if secs != tc.wantTTL {
				t.Errorf("USING TTL: got %d, want %d", secs, tc.wantTTL)
			}
			if tc.wantAt.IsZero() {
				if at != math.MaxInt64 {
					t.Errorf("expires_at: got %d, want never (MaxInt64)", at)
				}
				return
			}
			if want := tc.wantAt.UnixMilli(); at != want {
				t.Errorf("expires_at: got %v, want %v", time.UnixMilli(at).UTC(), tc.wantAt)
			}
			// The server, counting from the whole second it runs the write
			// in, must not delete the row before expires_at.
			if server := tc.now.Truncate(time.Second).Add(time.Duration(secs) * time.Second); tc.ttl < MaxTTL && server.UnixMilli() < at {
				t.Errorf("server would delete at %v, before expires_at %v", server, time.UnixMilli(at).UTC())
			}
			if time.UnixMilli(at).Before(tc.now.Add(tc.ttl)) {
				t.Errorf("expires_at %v is before now+ttl %v", time.UnixMilli(at).UTC(), tc.now.Add(tc.ttl))
			}
		})
	}
}

func TestParseTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
	}{
		{"ks.tbl", "ks.tbl"},
		{"My_KS.Idem2", "My_KS.Idem2"},
		{`"MyKS"."Tbl"`, `"MyKS"."Tbl"`},
		{"ks." + strings.Repeat("t", 48), "ks." + strings.Repeat("t", 48)},
	} {
		got, err := parseTable(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseTable(%q): got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"", "tbl", ".tbl", "ks.", "ks.tbl.x", "1ks.tbl", "ks.t-b", "ks.t b", "ks.tbl;DROP", `ks."a"b"`,
		`"".tbl`, "ks." + strings.Repeat("t", 49), "ks.tbl ", "ks.tbl\n",
	} {
		if got, err := parseTable(bad); err == nil {
			t.Errorf("parseTable(%q): got %q, want an error", bad, got)
		}
	}
}

func FuzzParseTable(f *testing.F) {
	for _, s := range []string{"ks.tbl", `"A"."b"`, "a.b.c", "ks.t;x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseTable(in)
		if err != nil {
			return
		}
		// Whatever is accepted is spliced into CQL: it must be exactly two
		// plain identifiers.
		if got != in || strings.Count(got, ".") != 1 || strings.ContainsAny(got, " ;'\\\n\t()-") {
			t.Fatalf("parseTable(%q) accepted %q", in, got)
		}
	})
}

func TestOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    []Option
		wantErr bool
	}{
		{"defaults", nil, false},
		{"local", []Option{WithSerialConsistency(gocql.LocalSerial), WithCommitConsistency(gocql.LocalQuorum)}, false},
		{"quorum reads", []Option{WithReadConsistency(gocql.Quorum)}, false},
		{"local serial reads", []Option{WithSerialConsistency(gocql.LocalSerial), WithReadConsistency(gocql.LocalSerial)}, false},
		{"serial must be serial", []Option{WithSerialConsistency(gocql.Quorum)}, true},
		{"commit must not be serial", []Option{WithCommitConsistency(gocql.Serial)}, true},
		{"mixed serial levels", []Option{WithSerialConsistency(gocql.LocalSerial), WithReadConsistency(gocql.Serial)}, true},
		{"mixed serial levels, other way", []Option{WithReadConsistency(gocql.LocalSerial)}, true},
		{"read ANY", []Option{WithReadConsistency(gocql.Any)}, true},
		{"unknown level", []Option{WithCommitConsistency(gocql.Consistency(0x77))}, true},
		{"value size", []Option{WithMaxValueSize(64)}, false},
		{"value size negative", []Option{WithMaxValueSize(-1)}, true},
		{"value size over the limit", []Option{WithMaxValueSize(MaxValueSizeLimit + 1)}, true},
		{"resolve timeout", []Option{WithResolveTimeout(0)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(nil, "ks.tbl", append(tc.opts, withExecutor(&scripted{t: t}))...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New: got error %v, want error %v", err, tc.wantErr)
			}
			err = CreateTable(context.Background(), nil, "ks.tbl", append(tc.opts, withExecutor(&scripted{t: t}))...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CreateTable: got error %v, want error %v", err, tc.wantErr)
			}
		})
	}
	if _, err := New(nil, "ks.tbl"); err == nil {
		t.Error("New without a session: got no error")
	}
	if _, err := New(nil, "tbl", withExecutor(&scripted{t: t})); err == nil {
		t.Error("New with a table without keyspace: got no error")
	}
}

// TestReadConsistency: Get reads at the serial level unless told otherwise.
func TestReadConsistency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts []Option
		want gocql.Consistency
	}{
		{nil, gocql.Serial},
		{[]Option{WithSerialConsistency(gocql.LocalSerial)}, gocql.LocalSerial},
		{[]Option{WithReadConsistency(gocql.LocalQuorum)}, gocql.LocalQuorum},
	} {
		ex := &scripted{t: t, steps: []answer{readsRow(row("v", 1))}}
		s, err := New(nil, "ks.tbl", append(tc.opts, withExecutor(ex))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		if got := ex.calls[0].cl; got != tc.want {
			t.Errorf("Get consistency: got %v, want %v", got, tc.want)
		}
	}
}

// TestLimits: input over Cassandra's limits is rejected before anything is
// sent (the scripted executor fails the test on any call).
func TestLimits(t *testing.T) {
	t.Parallel()
	ex := &scripted{t: t}
	s, err := New(nil, "ks.tbl", withExecutor(ex), WithMaxValueSize(10))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bigKey := strings.Repeat("k", MaxKeySize+1)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Get key over 64 KiB", func() error { _, err := s.Get(ctx, bigKey); return err }},
		{"PutIfAbsent key over 64 KiB", func() error { _, err := s.PutIfAbsent(ctx, bigKey, nil, 0); return err }},
		{"CompareAndDelete key over 64 KiB", func() error { return s.CompareAndDelete(ctx, bigKey, 1) }},
		{"PutIfAbsent value over the limit", func() error { _, err := s.PutIfAbsent(ctx, key, make([]byte, 11), 0); return err }},
		{"CompareAndSwap value over the limit", func() error { _, err := s.CompareAndSwap(ctx, key, 1, make([]byte, 11), 0); return err }},
		{"Upsert value over the limit", func() error { _, _, err := s.Upsert(ctx, key, make([]byte, 11), 1, 0); return err }},
		{"PutIfAbsent ttl over 20 years", func() error { _, err := s.PutIfAbsent(ctx, key, nil, MaxTTL+time.Second); return err }},
		{"PutIfAbsent ttl past 2038", func() error { _, err := s.PutIfAbsent(ctx, key, nil, time.Until(latestExpiry)+time.Second); return err }},
		{"CompareAndSwap ttl past 2038", func() error {
			_, err := s.CompareAndSwap(ctx, key, 1, nil, time.Until(latestExpiry)+time.Second)
			return err
		}},
		{"Upsert ttl past 2038", func() error {
			_, _, err := s.Upsert(ctx, key, nil, 1, time.Until(latestExpiry)+time.Second)
			return err
		}},
		{"CompareAndSwap version overflow", func() error { _, err := s.CompareAndSwap(ctx, key, math.MaxInt64, nil, 0); return err }},
	} {
		err := tc.call()
		if !errors.Is(err, idem.ErrInvalid) {
			t.Errorf("%s: got %v, want one matching idem.ErrInvalid", tc.name, err)
		} else if n := len(err.Error()); n > 600 {
			t.Errorf("%s: the error is %d bytes long; want the key shortened", tc.name, n)
		}
	}
	// At the limits exactly, the write goes out.
	ex.steps = []answer{casApplied(), casApplied()}
	if _, err := s.PutIfAbsent(ctx, strings.Repeat("k", MaxKeySize), make([]byte, 10), time.Until(latestExpiry)-time.Minute); err != nil {
		t.Errorf("key of %d bytes, value at the limit, ttl up to the latest expiry: %v", MaxKeySize, err)
	}
	if _, _, err := s.Upsert(ctx, key, nil, math.MaxInt64, 0); err != nil {
		t.Errorf("Upsert at version MaxInt64: %v", err)
	}
}

// TestOurs: only the write's own write_id proves it applied; an expired row
// that carries it applied all the same, and nothing else counts, however
// alike it looks.
func TestOurs(t *testing.T) {
	t.Parallel()
	id := []byte("0123456789abcdef")
	w := &write{kind: compareAndSwap, key: key, value: []byte("new"), expect: 4, version: 5, id: id}
	withID := func(r record, id []byte) record { r.writeID = id; return r }
	for _, tc := range []struct {
		name string
		cur  record
		want bool
	}{
		{"own write", withID(row("new", 5), id), true},
		{"own write, expired since", withID(expiredRow("new", 5), id), true},
		{"identical write by another call", withID(row("new", 5), []byte("another write id")), false},
		{"the row as the condition requires", row("old", 4), false},
		{"absent", absent, false},
		{"not an item", record{stray: []any{nil, nil, nil, id}}, false},
	} {
		if got := ours(w, tc.cur); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if ours(&write{kind: compareAndDelete, key: key, expect: 4}, row("old", 4)) {
		t.Error("a CompareAndDelete (no write_id) recognised a row as its own")
	}
}

// TestConflictFromRow: the conflict carries the row the LWT returned, with
// expiry; an expired row is reported as absent.
func TestConflictFromRow(t *testing.T) {
	t.Parallel()
	at := time.Now().Add(time.Hour).Truncate(time.Second)
	live := record{found: true, value: []byte("cur"), version: 3, expiresAt: at.UnixMilli()}
	for _, tc := range []struct {
		name       string
		cur        record
		wantExists bool
	}{
		{"live", live, true},
		{"absent", absent, false},
		{"expired by the client's clock", expiredRow("cur", 3), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := scriptedStore(t, casRefused(tc.cur))
			_, err := s.CompareAndSwap(context.Background(), key, 2, []byte("x"), 0)
			var ce *idem.ConflictError
			if !errors.As(err, &ce) || ce.Exists != tc.wantExists || ce.Key != key || ce.Op != "CompareAndSwap" {
				t.Fatalf("got %v, want a CompareAndSwap conflict with Exists %v", err, tc.wantExists)
			}
			if tc.wantExists && (ce.Current.Version != 3 || string(ce.Current.Value) != "cur" || !ce.Current.ExpiresAt.Equal(at)) {
				t.Errorf("got current %+v, want cur v3 expiring %v", ce.Current, at)
			}
		})
	}
}
