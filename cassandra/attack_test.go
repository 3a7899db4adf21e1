package cassandra

// Attacks on the Store's settling, against a real Cassandra: through the
// executor seam (a wrapper that runs a competitor in the gap between a
// statement and its answer, or replaces the answer with an error) and on
// the wire (a TCP proxy that drops, delays and cuts).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
	"github.com/idemkit/idemkit/internal/testenv"
)

// atkStep is what atkExec does with one conditional write.
type atkStep struct {
	before func()             // runs before the statement (a competitor's write)
	send   bool               // run the statement on the server
	after  func(applied bool) // runs after it ran, before the answer returns
	err    error              // replaces the answer when set; nil: the real answer
}

// atkExec wraps the real executor: each conditional write takes the next
// step of its script (none left: pass through); reads may be failed.
type atkExec struct {
	executor
	mu      sync.Mutex
	steps   []atkStep
	sent    atomic.Int64 // conditional writes that reached the server
	applied atomic.Int64 // of those, applied
	reads   atomic.Int64
	readErr func(ctx context.Context) error // nil: reads pass through
}

func (a *atkExec) script(s ...atkStep) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.steps = append([]atkStep(nil), s...)
}

func (a *atkExec) cas(ctx context.Context, stmt string, args ...any) (bool, record, error) {
	a.mu.Lock()
	st := atkStep{send: true}
	if len(a.steps) > 0 {
		st, a.steps = a.steps[0], a.steps[1:]
	}
	a.mu.Unlock()
	if st.before != nil {
		st.before()
	}
	var (
		applied bool
		cur     record
		err     error
	)
	if st.send {
		a.sent.Add(1)
		applied, cur, err = a.executor.cas(ctx, stmt, args...)
		if err != nil {
			return false, record{}, fmt.Errorf("atkExec: the real statement failed: %w", err)
		}
		if applied {
			a.applied.Add(1)
		}
		if st.after != nil {
			st.after(applied)
		}
	}
	if st.err != nil {
		return false, record{}, st.err
	}
	return applied, cur, err
}

func (a *atkExec) read(ctx context.Context, cl gocql.Consistency, stmt string, args ...any) (record, error) {
	a.reads.Add(1)
	if a.readErr != nil {
		if err := a.readErr(ctx); err != nil {
			return record{}, err
		}
	}
	return a.executor.read(ctx, cl, stmt, args...)
}

// atkClock is a clock a test moves.
type atkClock struct{ off atomic.Int64 }

func (c *atkClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *atkClock) advance(d time.Duration) { c.off.Add(int64(d)) }

type atkEnv struct {
	s       *Store // writes through ex, on clock
	ex      *atkExec
	plain   *Store // the real executor, the real clock
	clock   *atkClock
	session *gocql.Session
	table   string
}

func atkSetup(t *testing.T, opts ...Option) *atkEnv {
	t.Helper()
	session, ks := testenv.Cassandra(t)
	table := ks + ".attack"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := CreateTable(ctx, session, table); err != nil {
		t.Fatal(err)
	}
	plain, err := New(session, table)
	if err != nil {
		t.Fatal(err)
	}
	e := &atkEnv{plain: plain, clock: &atkClock{}, session: session, table: table}
	e.ex = &atkExec{executor: plain.exec}
	e.s, err = New(session, table, append([]Option{withExecutor(e.ex), withClock(e.clock.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// stored returns the item at key as the plain store sees it (ok false: absent).
func (e *atkEnv) stored(t *testing.T, key string) (idem.Item, bool) {
	t.Helper()
	it, err := e.plain.Get(context.Background(), key)
	if errors.Is(err, idem.ErrNotFound) {
		return idem.Item{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return it, true
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestAttackEmptyWriteIDRow: a row written outside the Store with every
// item column set and write_id = 0x (an empty blob, not NULL). Get reads it
// as a live item at version 1, yet every condition carries
// "write_id != 0x", so CompareAndSwap(1) and CompareAndDelete(1) are
// refused with a conflict whose Current is that very version 1, and Upsert
// and PutIfAbsent loop until ErrContention. Provoked with plain CQL.
func TestAttackEmptyWriteIDRow(t *testing.T) {
	t.Parallel()
	e := atkSetup(t)
	ctx := context.Background()
	const live, expired = "emptyid/live", "emptyid/expired"
	must(t, e.session.Query("INSERT INTO "+e.table+" (key, value, version, expires_at, write_id) VALUES (?, 0x6f6c64, 1, 9223372036854775807, 0x)", live).Exec())
	must(t, e.session.Query("INSERT INTO "+e.table+" (key, value, version, expires_at, write_id) VALUES (?, 0x6f6c64, 1, 1000, 0x)", expired).Exec())

	got, err := e.plain.Get(ctx, live)
	t.Logf("Get: %+v, %v", got, err)
	if err == nil {
		// Read as an item: the writes must treat it as one.
		if _, err := e.plain.CompareAndSwap(ctx, live, got.Version, []byte("new"), 0); err != nil {
			t.Errorf("CompareAndSwap(%d) on the item Get returned: %v", got.Version, err)
		}
	}
	if _, applied, err := e.plain.Upsert(ctx, live+"2", []byte("x"), 0, 0); err != nil || !applied {
		t.Fatalf("setup: %v", err)
	}
	must(t, e.session.Query("UPDATE "+e.table+" SET write_id = 0x WHERE key = ?", live+"2").Exec())
	if _, applied, err := e.plain.Upsert(ctx, live+"2", []byte("up"), 5, 0); err != nil || !applied {
		t.Errorf("Upsert(5) over the item at version 0: applied %v, %v", applied, err)
	}
	// Expired by its expires_at: absent for every operation.
	if _, err := e.plain.Get(ctx, expired); !errors.Is(err, idem.ErrNotFound) {
		t.Errorf("Get of the expired row: %v", err)
	}
	if _, err := e.plain.PutIfAbsent(ctx, expired, []byte("new"), 0); err != nil {
		t.Errorf("PutIfAbsent over an expired (absent) row: %v", err)
	}
}

// uncertainClasses: every error the Store treats as "may have applied".
var uncertainClasses = []struct {
	name string
	err  error
}{
	{"WriteTimeout CAS", &gocql.RequestErrWriteTimeout{WriteType: "CAS"}},
	{"WriteTimeout SIMPLE", &gocql.RequestErrWriteTimeout{WriteType: "SIMPLE"}},
	{"WriteFailure", &gocql.RequestErrWriteFailure{WriteType: "CAS"}},
	{"CAS_WRITE_UNKNOWN", &gocql.RequestErrCASWriteUnknown{}},
	{"Unavailable", &gocql.RequestErrUnavailable{}},
	{"ReadTimeout", &gocql.RequestErrReadTimeout{}},
	{"client timeout", gocql.ErrTimeoutNoResponse},
	{"connection closed", gocql.ErrConnectionClosed},
	{"deadline", context.DeadlineExceeded},
	{"cancelled", context.Canceled},
}

// TestAttackMultiStatementUncertain: PutIfAbsent over a row that is expired
// by the Store's clock (an hour ahead) but still on the server: the create
// is refused for real, then the replace runs for real and its answer is
// replaced by each uncertain error; or the replace never runs and the error
// comes all the same. Applied: the own write_id proves it. Not run: unknown.
// Likewise Upsert over an absent row (raise refused, then create).
func TestAttackMultiStatementUncertain(t *testing.T) {
	t.Parallel()
	e := atkSetup(t)
	e.clock.advance(time.Hour)
	ctx := context.Background()
	for _, c := range uncertainClasses {
		for _, send := range []bool{true, false} {
			name := fmt.Sprintf("%s/sent=%v", c.name, send)
			t.Run("PutIfAbsent/"+name, func(t *testing.T) {
				k := "multi/put/" + name
				_, err := e.plain.PutIfAbsent(ctx, k, []byte("old"), 10*time.Minute)
				must(t, err)
				e.ex.script(atkStep{send: true}, atkStep{send: send, err: c.err})
				s0 := e.ex.sent.Load()
				it, err := e.s.PutIfAbsent(ctx, k, []byte("new"), 0)
				cur, _ := e.stored(t, k)
				if send {
					if err != nil || string(it.Value) != "new" {
						t.Errorf("got %+v, %v; want applied", it, err)
					}
					if string(cur.Value) != "new" {
						t.Errorf("stored %q", cur.Value)
					}
				} else {
					if !errors.Is(err, idem.ErrUnknownOutcome) {
						t.Errorf("got %+v, %v; want ErrUnknownOutcome", it, err)
					}
					if string(cur.Value) != "old" {
						t.Errorf("stored %q, want old", cur.Value)
					}
				}
				if n := e.ex.sent.Load() - s0; n != map[bool]int64{true: 2, false: 1}[send] {
					t.Errorf("statements sent: %d", n)
				}
			})
			t.Run("Upsert/"+name, func(t *testing.T) {
				k := "multi/upsert/" + name
				e.ex.script(atkStep{send: true}, atkStep{send: send, err: c.err})
				s0 := e.ex.sent.Load()
				it, applied, err := e.s.Upsert(ctx, k, []byte("new"), 9, 0)
				cur, ok := e.stored(t, k)
				if send {
					if err != nil || !applied || it.Version != 9 || cur.Version != 9 {
						t.Errorf("got %+v applied %v, %v (stored %+v); want applied", it, applied, err, cur)
					}
				} else if !errors.Is(err, idem.ErrUnknownOutcome) || ok {
					t.Errorf("got %+v applied %v, %v (stored %v); want ErrUnknownOutcome, nothing stored", it, applied, err, ok)
				}
				if n := e.ex.sent.Load() - s0; n != map[bool]int64{true: 2, false: 1}[send] {
					t.Errorf("statements sent: %d", n)
				}
			})
		}
	}
}

// TestAttackGapCompetitors: a competitor acts in the gap between two
// statements of one attempt, or between a statement that applied and its
// lost answer (a WriteTimeout), through the seam's hooks. Each case says
// what the contract allows.
func TestAttackGapCompetitors(t *testing.T) {
	t.Parallel()
	e := atkSetup(t)
	ctx := context.Background()
	wt := &gocql.RequestErrWriteTimeout{WriteType: "CAS"}
	ahead, err := New(e.session, e.table, withClock(e.clock.now)) // a competitor on the Store's clock
	must(t, err)
	e.clock.advance(time.Hour)

	t.Run("PutIfAbsent: competitor replaces the expired row before our replace", func(t *testing.T) {
		k := "gap/put/replace"
		_, err := e.plain.PutIfAbsent(ctx, k, []byte("old"), 10*time.Minute)
		must(t, err)
		e.ex.script(atkStep{send: true}, atkStep{send: true, before: func() {
			_, err := ahead.PutIfAbsent(ctx, k, []byte("other"), 0)
			must(t, err)
		}})
		_, err = e.s.PutIfAbsent(ctx, k, []byte("new"), 0)
		var ce *idem.ConflictError
		if !errors.As(err, &ce) || !ce.Exists || string(ce.Current.Value) != "other" {
			t.Errorf("got %v; want a conflict carrying the competitor's item", err)
		}
	})
	t.Run("PutIfAbsent: applied, then deleted and re-created by a competitor", func(t *testing.T) {
		k := "gap/put/recreate"
		e.ex.script(atkStep{send: true, err: wt, after: func(bool) {
			cur, _ := e.stored(t, k)
			must(t, e.plain.CompareAndDelete(ctx, k, cur.Version))
			_, err := e.plain.PutIfAbsent(ctx, k, []byte("new"), 0) // the same value
			must(t, err)
		}})
		s0 := e.ex.sent.Load()
		it, err := e.s.PutIfAbsent(ctx, k, []byte("new"), 0)
		if !errors.Is(err, idem.ErrUnknownOutcome) {
			t.Errorf("got %+v, %v; want ErrUnknownOutcome", it, err)
		}
		if n := e.ex.sent.Load() - s0; n != 1 {
			t.Errorf("sent %d statements, want 1", n)
		}
	})
	t.Run("Upsert: applied, then the same value at the same version by another call", func(t *testing.T) {
		k := "gap/upsert/same"
		e.ex.script(atkStep{send: true}, atkStep{send: true, err: wt, after: func(bool) {
			must(t, e.plain.CompareAndDelete(ctx, k, 9))
			if _, applied, err := e.plain.Upsert(ctx, k, []byte("new"), 9, 0); err != nil || !applied {
				t.Fatalf("competitor: %v %v", applied, err)
			}
		}})
		it, applied, err := e.s.Upsert(ctx, k, []byte("new"), 9, 0)
		if !errors.Is(err, idem.ErrUnknownOutcome) {
			t.Errorf("got %+v applied %v, %v; want ErrUnknownOutcome", it, applied, err)
		}
	})
	t.Run("Upsert: applied, then raised above by a competitor", func(t *testing.T) {
		k := "gap/upsert/raised"
		e.ex.script(atkStep{send: true}, atkStep{send: true, err: wt, after: func(bool) {
			if _, applied, err := e.plain.Upsert(ctx, k, []byte("other"), 12, 0); err != nil || !applied {
				t.Fatalf("competitor: %v %v", applied, err)
			}
		}})
		it, applied, err := e.s.Upsert(ctx, k, []byte("new"), 9, 0)
		if !errors.Is(err, idem.ErrUnknownOutcome) {
			t.Errorf("got %+v applied %v, %v; want ErrUnknownOutcome (not applied == false)", it, applied, err)
		}
	})
	t.Run("Upsert: competitor creates higher between raise and create", func(t *testing.T) {
		k := "gap/upsert/higher"
		e.ex.script(atkStep{send: true}, atkStep{send: true, before: func() {
			_, _, err := e.plain.Upsert(ctx, k, []byte("other"), 12, 0)
			must(t, err)
		}})
		it, applied, err := e.s.Upsert(ctx, k, []byte("new"), 9, 0)
		if err != nil || applied || it.Version != 12 {
			t.Errorf("got %+v applied %v, %v; want a proven refusal at v12", it, applied, err)
		}
	})
	t.Run("Upsert: competitor creates lower between raise and create; create -> raise uncertain", func(t *testing.T) {
		k := "gap/upsert/lower"
		e.ex.script(atkStep{send: true}, atkStep{send: true, before: func() {
			_, _, err := e.plain.Upsert(ctx, k, []byte("other"), 3, 0)
			must(t, err)
		}}, atkStep{send: false, err: gocql.ErrTimeoutNoResponse})
		s0 := e.ex.sent.Load()
		_, applied, err := e.s.Upsert(ctx, k, []byte("new"), 9, 0)
		if !errors.Is(err, idem.ErrUnknownOutcome) {
			t.Errorf("got applied %v, %v; want ErrUnknownOutcome", applied, err)
		}
		if n := e.ex.sent.Load() - s0; n != 2 {
			t.Errorf("sent %d, want 2", n)
		}
		if cur, _ := e.stored(t, k); cur.Version != 3 {
			t.Errorf("stored %+v", cur)
		}
	})
	t.Run("CompareAndSwap: applied, then expired by the clock", func(t *testing.T) {
		k := "gap/cas/expired"
		it, err := e.s.PutIfAbsent(ctx, k, []byte("old"), 0)
		must(t, err)
		e.ex.script(atkStep{send: true, err: wt, after: func(bool) { e.clock.advance(time.Minute) }})
		got, err := e.s.CompareAndSwap(ctx, k, it.Version, []byte("new"), time.Second)
		// Its own write_id is found (expired since): applied is proven.
		if err != nil || got.Version != it.Version+1 {
			t.Errorf("got %+v, %v; want applied", got, err)
		}
	})
	t.Run("CompareAndDelete: applied, key re-created at the same version", func(t *testing.T) {
		k := "gap/del/recreate"
		_, _, err := e.plain.Upsert(ctx, k, []byte("old"), 4, 0)
		must(t, err)
		e.ex.script(atkStep{send: true, err: wt, after: func(bool) {
			_, _, err := e.plain.Upsert(ctx, k, []byte("newcomer"), 4, 0)
			must(t, err)
		}})
		s0 := e.ex.sent.Load()
		err = e.s.CompareAndDelete(ctx, k, 4)
		if !errors.Is(err, idem.ErrUnknownOutcome) {
			t.Errorf("got %v; want ErrUnknownOutcome", err)
		}
		if n := e.ex.sent.Load() - s0; n != 1 {
			t.Errorf("sent %d, want 1", n)
		}
		if cur, ok := e.stored(t, k); !ok || string(cur.Value) != "newcomer" {
			t.Errorf("the newcomer is gone: %+v %v", cur, ok)
		}
	})
	t.Run("stray row: overwrite applied, then the stray put back", func(t *testing.T) {
		k := "gap/stray"
		q := "INSERT INTO " + e.table + " (key, value, version) VALUES (?, 0x6f6c64, 1)"
		must(t, e.session.Query(q, k).Exec())
		e.ex.script(atkStep{send: true}, atkStep{send: true, err: wt, after: func(bool) {
			must(t, e.session.Query("DELETE FROM "+e.table+" WHERE key = ?", k).Exec())
			must(t, e.session.Query(q, k).Exec())
		}})
		it, err := e.s.PutIfAbsent(ctx, k, []byte("new"), 0)
		if !errors.Is(err, idem.ErrUnknownOutcome) {
			t.Errorf("got %+v, %v; want ErrUnknownOutcome", it, err)
		}
	})
}

// TestAttackSettlingReadFails: the write applies, its answer is a timeout,
// and the SERIAL read that settles it fails every time, or hangs past the
// resolve timeout. Nothing is proven: unknown, and nothing is sent again.
func TestAttackSettlingReadFails(t *testing.T) {
	t.Parallel()
	e := atkSetup(t, WithResolveTimeout(700*time.Millisecond))
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		fail func(ctx context.Context) error
	}{
		{"read timeout", func(context.Context) error { return &gocql.RequestErrReadTimeout{} }},
		{"no connections", func(context.Context) error { return gocql.ErrNoConnections }},
		{"hangs", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := "settle/" + tc.name
			e.ex.readErr = tc.fail
			defer func() { e.ex.readErr = nil }()
			e.ex.script(atkStep{send: true, err: gocql.ErrTimeoutNoResponse})
			s0 := e.ex.sent.Load()
			it, err := e.s.PutIfAbsent(ctx, k, []byte("new"), 0)
			if !errors.Is(err, idem.ErrUnknownOutcome) {
				t.Errorf("got %+v, %v; want ErrUnknownOutcome", it, err)
			}
			if n := e.ex.sent.Load() - s0; n != 1 {
				t.Errorf("sent %d", n)
			}
		})
	}
}

// TestAttackCancelBetweenStatements: the caller's context is cancelled in
// the gap after the first statement of a PutIfAbsent was refused (the row
// expired by the Store's clock). Nothing further may be sent, and the call
// must neither succeed nor report a conflict.
func TestAttackCancelBetweenStatements(t *testing.T) {
	t.Parallel()
	e := atkSetup(t)
	e.clock.advance(time.Hour)
	k := "cancel/between"
	_, err := e.plain.PutIfAbsent(context.Background(), k, []byte("old"), 10*time.Minute)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	e.ex.script(atkStep{send: true, after: func(bool) { cancel() }})
	s0 := e.ex.sent.Load()
	it, err := e.s.PutIfAbsent(ctx, k, []byte("new"), 0)
	if err == nil || errors.Is(err, idem.ErrConflict) || !errors.Is(err, context.Canceled) {
		t.Errorf("got %+v, %v; want the cancellation", it, err)
	}
	if n := e.ex.sent.Load() - s0; n != 1 {
		t.Errorf("sent %d", n)
	}
	if cur, _ := e.stored(t, k); string(cur.Value) != "old" {
		t.Errorf("stored %+v", cur)
	}
}

// TestAttackTTLBoundaries: a ttl ending exactly at the latest expiry the
// Store accepts is taken by the server; one second later is refused as
// invalid before sending; and a 1ns ttl at every sub-second offset never
// lets the server delete the row before the item's ExpiresAt.
func TestAttackTTLBoundaries(t *testing.T) {
	t.Parallel()
	e := atkSetup(t)
	ctx := context.Background()
	ttl := time.Until(latestExpiry) - 3*time.Second
	if _, err := e.plain.PutIfAbsent(ctx, "ttl/latest", []byte("x"), ttl); err != nil {
		t.Errorf("ttl ending at the latest expiry: %v", err)
	}
	if _, err := e.plain.PutIfAbsent(ctx, "ttl/past", []byte("x"), time.Until(latestExpiry)+time.Second); !errors.Is(err, idem.ErrInvalid) {
		t.Errorf("ttl past the latest expiry: %v", err)
	}
	for i := range 4 {
		k := fmt.Sprintf("ttl/short/%d", i)
		it, err := e.plain.PutIfAbsent(ctx, k, []byte("x"), time.Duration(i)*250*time.Millisecond+time.Nanosecond)
		must(t, err)
		var k2 string
		for time.Now().Before(it.ExpiresAt.Add(-20 * time.Millisecond)) {
			err := e.session.Query("SELECT key FROM "+e.table+" WHERE key = ?", k).Consistency(gocql.Serial).Scan(&k2)
			if errors.Is(err, gocql.ErrNotFound) {
				t.Errorf("%s: the server deleted the row at %v, before ExpiresAt %v", k, time.Now(), it.ExpiresAt)
				break
			}
			must(t, err)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// atkProxy starts a faultproxy in front of Cassandra with cfg (Target and
// Protocol filled in), closed when the test ends.
func atkProxy(t *testing.T, cfg faultproxy.Config) *faultproxy.Proxy {
	t.Helper()
	cfg.Target, cfg.Protocol = testenv.CassandraHosts(t)[0], faultproxy.CQL
	p, err := faultproxy.Start(cfg)
	must(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// atkProxiedSession connects through p only: protocol v4, every node's
// address translated to the proxy.
func atkProxiedSession(t *testing.T, p *faultproxy.Proxy, timeout time.Duration) *gocql.Session {
	t.Helper()
	cluster := gocql.NewCluster(p.Addr())
	cluster.ProtoVersion = 4
	cluster.Timeout = timeout
	cluster.AddressTranslator = gocql.AddressTranslatorFunc(func(net.IP, int) (net.IP, int) {
		return net.IPv4(127, 0, 0, 1), p.Port()
	})
	s, err := cluster.CreateSession()
	must(t, err)
	t.Cleanup(s.Close)
	return s
}

// TestAttackWireHeldRequest: on the wire, the proxy holds a CompareAndSwap
// request (its Decide blocks on the next EXECUTE) past the driver's timeout
// and the settling SERIAL read (which goes through at once); the call must
// report an unknown outcome. Then the proxy lets the request through: it
// lands, proving "not applied" would have been a lie. The store never sends
// it again.
func TestAttackWireHeldRequest(t *testing.T) {
	t.Parallel()
	admin, ks := testenv.Cassandra(t)
	table := ks + ".wire"
	must(t, CreateTable(context.Background(), admin, table))
	plain, err := New(admin, table)
	must(t, err)
	var hold atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	var p *faultproxy.Proxy
	p = atkProxy(t, faultproxy.Config{Decide: func(r faultproxy.Request) faultproxy.Fault {
		if r.Opcode != 0x0A || !hold.CompareAndSwap(true, false) { // EXECUTE
			return faultproxy.Pass
		}
		close(held)
		select {
		case <-release:
			return faultproxy.Pass
		case <-p.Done():
			return faultproxy.DropRequest
		}
	}})
	s, err := New(atkProxiedSession(t, p, 500*time.Millisecond), table)
	must(t, err)
	ctx := context.Background()
	it, err := plain.PutIfAbsent(ctx, "held", []byte("old"), 0)
	must(t, err)
	if _, err := s.CompareAndSwap(ctx, "held", 1, []byte("warm"), 0); !errors.Is(err, idem.ErrConflict) { // prepares
		t.Fatalf("warm-up: %v", err)
	}
	hold.Store(true)
	got, callErr := s.CompareAndSwap(ctx, "held", it.Version, []byte("new"), 0)
	select {
	case <-held:
	default:
		t.Fatal("the proxy held nothing: the test did not test anything")
	}
	if !errors.Is(callErr, idem.ErrUnknownOutcome) {
		t.Errorf("got %+v, %v; want ErrUnknownOutcome", got, callErr)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cur, err := plain.Get(ctx, "held")
		must(t, err)
		if string(cur.Value) == "new" {
			t.Logf("the held request landed after the call returned %v: unknown was the only honest answer", callErr)
			break
		}
		if time.Now().After(deadline) {
			t.Logf("the held request did not land (stored %q v%d)", cur.Value, cur.Version)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAttackLinearizableHarsh runs idemtest.Linearizable through the proxy
// with 20% of responses dropped, 5% of connections cut at a response, 10%
// of responses and 5% of requests delayed past the driver's timeout (so
// they arrive after the settling read, and late answers meet reused
// connections). Each kind of fault must have happened.
func TestAttackLinearizableHarsh(t *testing.T) {
	t.Parallel()
	admin, ks := testenv.Cassandra(t)
	table := ks + ".linear"
	must(t, CreateTable(context.Background(), admin, table))
	p := atkProxy(t, faultproxy.Config{Drop: 0.20, CutAtResponse: 0.05, Delay: 0.10, DelayRequest: 0.05, DelayBy: 700 * time.Millisecond})
	p.SetFaults(false)
	s, err := New(atkProxiedSession(t, p, 400*time.Millisecond), table, WithResolveTimeout(5*time.Second))
	must(t, err)
	if _, err := s.Get(context.Background(), "warm-up"); !errors.Is(err, idem.ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	t.Logf("proxy seed %d", p.Seed())
	p.SetFaults(true)
	start := time.Now()
	idemtest.Linearizable(t, s, idemtest.LinearConfig{Clients: 6, Keys: 3, Ops: 30, Rounds: 4, Timeout: 8 * time.Second})
	st := p.Stats()
	t.Logf("%v: dropped %d responses, cut %d connections, delayed %d responses and %d requests",
		time.Since(start).Round(time.Millisecond), st.Dropped, st.CutAtResponse, st.Delayed, st.DelayedRequests)
	if st.Dropped == 0 || st.CutAtResponse == 0 || st.Delayed == 0 || st.DelayedRequests == 0 {
		t.Errorf("stats %+v: a fault never happened; the test did not test what it says", st)
	}
}
