package cassandra_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
	"github.com/idemkit/idemkit/internal/testenv"
)

// Record a ledger entry in the caller's own table, fenced by the claim that
// Do holds, so that a worker that stalls past its lease cannot overwrite
// the entry of the worker that took over. (Not run by go test: it needs a
// cluster.)
func ExampleFencedUpdate() {
	var session *gocql.Session // from cluster.CreateSession()
	ctx := context.Background()
	// Once, at setup: the caller's table with a bigint fence column.
	err := session.Query(`CREATE TABLE IF NOT EXISTS payments.ledger (
		account text,
		entry   text,
		amount  bigint,
		fence   bigint,
		PRIMARY KEY (account, entry)
	)`).ExecContext(ctx)
	if err != nil {
		log.Fatal(err)
	}
	store, err := cassandra.New(session, "payments.idem")
	if err != nil {
		log.Fatal(err)
	}
	_, err = idem.Do(ctx, store, "order-42/charge", func(ctx context.Context) (string, error) {
		lease, _ := idem.LeaseFrom(ctx)
		return "entry-1", cassandra.FencedUpdate(ctx, session, cassandra.FencedWrite{
			Table: "payments.ledger",
			Key:   map[string]any{"account": "acct-7", "entry": "order-42"},
			Set:   map[string]any{"amount": int64(1250)},
		}, lease.Fence())
	})
	if errors.Is(err, cassandra.ErrFenced) {
		fmt.Println("a later claim has written the entry; this worker's write was refused")
	}
}

// fenceEnv is a Store for the claims and a ledger table of the caller's
// own, in one fresh keyspace.
type fenceEnv struct {
	session *gocql.Session
	store   *cassandra.Store
	ledger  string // "keyspace.table"
}

// ledgerCQL is the caller's table: a compound primary key, so that Key
// names a partition and a clustering column.
const ledgerCQL = `CREATE TABLE %s (account text, entry int, owner text, amount bigint, fence bigint, PRIMARY KEY (account, entry))`

func newFenceEnv(t *testing.T) *fenceEnv {
	t.Helper()
	session, ks := testenv.Cassandra(t)
	return &fenceEnv{
		session: session,
		store:   newStore(t, session, newTable(t, session, ks)),
		ledger:  createTable(t, session, ks, ledgerCQL),
	}
}

// createTable creates a table of the caller's own, named uniquely for t,
// with the CREATE TABLE statement ddl (%s: the name), and returns its name.
func createTable(t *testing.T, s *gocql.Session, ks, ddl string) string {
	t.Helper()
	table := ks + "." + testenv.UniqueName(t, "ledger")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Query(fmt.Sprintf(ddl, table)).ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.AwaitSchemaAgreement(ctx); err != nil {
		t.Fatal(err)
	}
	return table
}

// entry is the write of owner's amount to the row (account, 1).
func (e *fenceEnv) entry(account, owner string, amount int64) cassandra.FencedWrite {
	return cassandra.FencedWrite{
		Table: e.ledger,
		Key:   map[string]any{"account": account, "entry": 1},
		Set:   map[string]any{"owner": owner, "amount": amount},
	}
}

// row is a ledger row as read back; fence is -1 when the column is NULL.
type row struct {
	found  bool
	owner  string
	amount int64
	fence  int64
}

func (e *fenceEnv) read(t *testing.T, account string) row {
	t.Helper()
	var (
		r     row
		fence *int64
	)
	err := e.session.Query(`SELECT owner, amount, fence FROM `+e.ledger+` WHERE account = ? AND entry = 1`, account).
		Consistency(gocql.Serial).ScanContext(t.Context(), &r.owner, &r.amount, &fence)
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		return row{}
	case err != nil:
		t.Fatal(err)
	}
	r.found, r.fence = true, -1
	if fence != nil {
		r.fence = *fence
	}
	return r
}

// wantRow fails t unless account's row holds owner's amount with fence.
func (e *fenceEnv) wantRow(t *testing.T, account, owner string, amount, fence int64) {
	t.Helper()
	if got, want := e.read(t, account), (row{true, owner, amount, fence}); got != want {
		t.Fatalf("row %q: got %+v, want %+v", account, got, want)
	}
}

// wantFenced fails t unless err is the refusal of a write with fence by a
// row whose fence is current.
func wantFenced(t *testing.T, err error, fence, current int64) {
	t.Helper()
	var fe *cassandra.FencedError
	if !errors.Is(err, cassandra.ErrFenced) || !errors.As(err, &fe) {
		t.Fatalf("got %v, want ErrFenced", err)
	}
	if fe.Fence != fence || fe.Current != current {
		t.Errorf("FencedError: fence %d refused by %d, want %d refused by %d", fe.Fence, fe.Current, fence, current)
	}
}

// ahead is a clock d ahead of the real one, for a claimer that sees the
// others' leases pass.
func ahead(d time.Duration) idem.Option {
	return idem.WithClock(func() time.Time { return time.Now().Add(d) })
}

// TestFenceStaleWorker: A claims a key; B, whose clock is past A's lease,
// takes it over. Whatever the order of their writes to the row, once B's
// has landed A's is refused and the row keeps B's: "later first", the
// stalled A wakes after B wrote; "earlier first", A wrote before B, B's
// write lands over it, and A's next one is refused.
func TestFenceStaleWorker(t *testing.T) {
	t.Parallel()
	e := newFenceEnv(t)
	for _, order := range []string{"later first", "earlier first"} {
		t.Run(order, func(t *testing.T) {
			ctx, key := t.Context(), "stale/"+order
			a, _, err := idem.Claim(ctx, e.store, key, idem.WithLease(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			b, _, err := idem.Claim(ctx, e.store, key, ahead(2*time.Second), idem.WithLease(time.Second))
			if err != nil || b == nil || b.Attempt() == 1 {
				t.Fatalf("B's takeover: %v, %v", b, err)
			}
			if b.Fence() <= a.Fence() {
				t.Fatalf("B took over with fence %d, not above A's %d", b.Fence(), a.Fence())
			}
			if order == "earlier first" {
				if err := cassandra.FencedUpdate(ctx, e.session, e.entry(key, "a", 100), a.Fence()); err != nil {
					t.Fatalf("A's write before B's: %v", err)
				}
				e.wantRow(t, key, "a", 100, a.Fence())
			}
			if err := cassandra.FencedUpdate(ctx, e.session, e.entry(key, "b", 200), b.Fence()); err != nil {
				t.Fatalf("B's write: %v", err)
			}
			err = cassandra.FencedUpdate(ctx, e.session, e.entry(key, "a", 999), a.Fence())
			wantFenced(t, err, a.Fence(), b.Fence())
			e.wantRow(t, key, "b", 200, b.Fence())
			if err := a.Complete(ctx, []byte(`"a"`)); !errors.Is(err, idem.ErrLeaseLost) {
				t.Errorf("stale A's Complete: got %v, want ErrLeaseLost", err)
			}
		})
	}
}

// TestFenceDo: the same through idem.Do. A's fn stalls (its heartbeat
// with it) before writing; B, with a clock past A's lease, takes the key
// over, writes the entry and completes. When A wakes, its write is refused,
// its Do fails with ErrFenced, and every later caller gets B's answer.
func TestFenceDo(t *testing.T) {
	t.Parallel()
	e := newFenceEnv(t)
	ctx, key := t.Context(), "do/order-7"
	started, wake := make(chan int64), make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		_, err := idem.Do(ctx, e.store, key, func(ctx context.Context) (string, error) {
			lease, _ := idem.LeaseFrom(ctx)
			started <- lease.Fence()
			select { // stalled past the lease
			case <-wake:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			if err := cassandra.FencedUpdate(ctx, e.session, e.entry(key, "a", 999), lease.Fence()); err != nil {
				return "", err
			}
			return "a", nil
		}, idem.WithLease(time.Hour), idem.WithoutHeartbeat())
		aDone <- err
	}()
	fenceA := <-started

	var fenceB int64
	got, err := idem.Do(ctx, e.store, key, func(ctx context.Context) (string, error) {
		lease, _ := idem.LeaseFrom(ctx)
		if lease.Attempt() == 1 {
			t.Errorf("B's claim is not a takeover")
		}
		fenceB = lease.Fence()
		if err := cassandra.FencedUpdate(ctx, e.session, e.entry(key, "b", 200), lease.Fence()); err != nil {
			return "", err
		}
		return "b", nil
	}, ahead(2*time.Hour), idem.WithLease(time.Hour))
	if err != nil || got != "b" {
		t.Fatalf("B's Do: got %q, %v; want \"b\"", got, err)
	}
	if fenceB <= fenceA {
		t.Fatalf("B's fence %d is not above A's %d", fenceB, fenceA)
	}

	close(wake)
	err = <-aDone
	wantFenced(t, err, fenceA, fenceB)
	e.wantRow(t, key, "b", 200, fenceB)
	got, err = idem.Do(ctx, e.store, key, func(context.Context) (string, error) {
		t.Error("fn ran again for a completed key")
		return "", nil
	}, ahead(2*time.Hour))
	if err != nil || got != "b" {
		t.Fatalf("a later caller: got %q, %v; want B's answer \"b\"", got, err)
	}
}

// TestFenceAcrossIncarnations: the key starts again after A's claim (A
// releases it, or its record is deleted by hand) and C claims it afresh
// with a higher fence. C's write lands over A's; A's next one is refused.
func TestFenceAcrossIncarnations(t *testing.T) {
	t.Parallel()
	e := newFenceEnv(t)
	for _, between := range []string{"release", "delete"} {
		t.Run(between, func(t *testing.T) {
			ctx, key := t.Context(), "again/"+between
			a, _, err := idem.Claim(ctx, e.store, key, idem.WithLease(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if err := cassandra.FencedUpdate(ctx, e.session, e.entry(key, "a", 100), a.Fence()); err != nil {
				t.Fatalf("A's write: %v", err)
			}
			switch between {
			case "release":
				if err := a.Release(ctx); err != nil {
					t.Fatal(err)
				}
			case "delete":
				it, err := e.store.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if err := e.store.CompareAndDelete(ctx, key, it.Version); err != nil {
					t.Fatal(err)
				}
			}
			c, _, err := idem.Claim(ctx, e.store, key, idem.WithLease(time.Minute))
			if err != nil || c == nil {
				t.Fatalf("C's claim after %s: %v, %v", between, c, err)
			}
			if c.Fence() <= a.Fence() {
				t.Fatalf("C claimed after %s with fence %d, not above A's %d", between, c.Fence(), a.Fence())
			}
			if err := cassandra.FencedUpdate(ctx, e.session, e.entry(key, "c", 300), c.Fence()); err != nil {
				t.Fatalf("C's write over A's: %v", err)
			}
			err = cassandra.FencedUpdate(ctx, e.session, e.entry(key, "a", 999), a.Fence())
			wantFenced(t, err, a.Fence(), c.Fence())
			e.wantRow(t, key, "c", 300, c.Fence())
		})
	}
}

// TestFenceWrites: what lands on which row. A claim writes its row as
// often as it likes; an absent row is created; a row with a NULL fence
// (written before the column was fenced) is below every fence; a lower
// fence never lands, on a row written once or many times.
func TestFenceWrites(t *testing.T) {
	t.Parallel()
	e := newFenceEnv(t)
	ctx := t.Context()
	const f = 1_000_000

	t.Run("same claim twice", func(t *testing.T) {
		for i, amount := range []int64{100, 150} {
			if err := cassandra.FencedUpdate(ctx, e.session, e.entry("twice", "a", amount), f); err != nil {
				t.Fatalf("write %d with the same fence: %v", i+1, err)
			}
			e.wantRow(t, "twice", "a", amount, f)
		}
	})
	t.Run("absent row", func(t *testing.T) {
		if r := e.read(t, "absent"); r.found {
			t.Fatalf("row already there: %+v", r)
		}
		if err := cassandra.FencedUpdate(ctx, e.session, e.entry("absent", "a", 100), f); err != nil {
			t.Fatal(err)
		}
		e.wantRow(t, "absent", "a", 100, f)
	})
	t.Run("NULL fence", func(t *testing.T) {
		// A row from before fencing: written once, plainly, before any
		// lightweight transaction touches it.
		err := e.session.Query(`INSERT INTO ` + e.ledger + ` (account, entry, owner, amount) VALUES ('null', 1, 'legacy', 1)`).ExecContext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e.wantRow(t, "null", "legacy", 1, -1)
		if err := cassandra.FencedUpdate(ctx, e.session, e.entry("null", "a", 100), 1); err != nil {
			t.Fatalf("the lowest fence over a NULL one: %v", err)
		}
		e.wantRow(t, "null", "a", 100, 1)
	})
	t.Run("lower fence", func(t *testing.T) {
		for _, fence := range []int64{f, f + 1, f + 2} {
			if err := cassandra.FencedUpdate(ctx, e.session, e.entry("lower", "b", fence), fence); err != nil {
				t.Fatal(err)
			}
		}
		for _, fence := range []int64{1, f, f + 1} {
			err := cassandra.FencedUpdate(ctx, e.session, e.entry("lower", "a", 0), fence)
			wantFenced(t, err, fence, f+2)
		}
		e.wantRow(t, "lower", "b", f+2, f+2)
	})
	t.Run("partial primary key", func(t *testing.T) {
		w := e.entry("partial", "a", 1)
		delete(w.Key, "entry")
		err := cassandra.FencedUpdate(ctx, e.session, w, f)
		var invalid *gocql.RequestErrInvalid
		if !errors.As(err, &invalid) || errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, cassandra.ErrFenced) {
			t.Fatalf("got %v, want the server's InvalidRequest, a known outcome", err)
		}
	})
}

// TestFenceNames: a case-sensitive column and one named like a CQL keyword,
// in a table whose fence column has its own name.
func TestFenceNames(t *testing.T) {
	t.Parallel()
	session, ks := testenv.Cassandra(t)
	table := createTable(t, session, ks, `CREATE TABLE %s ("Id" text PRIMARY KEY, "select" text, "Amount" bigint, epoch bigint)`)
	w := cassandra.FencedWrite{
		Table:  table,
		Key:    map[string]any{`"Id"`: "x"},
		Set:    map[string]any{"select": "s", `"Amount"`: int64(5)},
		Column: "Epoch", // unquoted: epoch
	}
	ctx := t.Context()
	if err := cassandra.FencedUpdate(ctx, session, w, 7); err != nil {
		t.Fatal(err)
	}
	err := cassandra.FencedUpdate(ctx, session, w, 6)
	wantFenced(t, err, 6, 7)
	var (
		sel    string
		amount int64
		epoch  int64
	)
	if err := session.Query(`SELECT "select", "Amount", epoch FROM `+table+` WHERE "Id" = 'x'`).Consistency(gocql.Serial).
		ScanContext(ctx, &sel, &amount, &epoch); err != nil {
		t.Fatal(err)
	}
	if sel != "s" || amount != 5 || epoch != 7 {
		t.Fatalf("row: got %q, %d, fence %d; want \"s\", 5, fence 7", sel, amount, epoch)
	}
}

// TestFenceInvalid: bad input is an error matching idem.ErrInvalid before
// anything is sent. There is no session at all: a write that got past the
// checks would fail for want of one instead.
func TestFenceInvalid(t *testing.T) {
	t.Parallel()
	ok := cassandra.FencedWrite{
		Table: "ks.ledger",
		Key:   map[string]any{"account": "a", "entry": 1},
		Set:   map[string]any{"amount": int64(1)},
	}
	with := func(change func(w *cassandra.FencedWrite)) cassandra.FencedWrite {
		w := ok
		w.Key, w.Set = clone(ok.Key), clone(ok.Set)
		change(&w)
		return w
	}
	for _, tc := range []struct {
		name  string
		w     cassandra.FencedWrite
		fence int64
	}{
		{"table without keyspace", with(func(w *cassandra.FencedWrite) { w.Table = "ledger" }), 1},
		{"table name with a dash", with(func(w *cassandra.FencedWrite) { w.Table = "ks.led-ger" }), 1},
		{"table name with a quote inside", with(func(w *cassandra.FencedWrite) { w.Table = `ks."a"b"` }), 1},
		{"empty Key", with(func(w *cassandra.FencedWrite) { w.Key = nil }), 1},
		{"empty Set", with(func(w *cassandra.FencedWrite) { w.Set = map[string]any{} }), 1},
		{"Set column with CQL in it", with(func(w *cassandra.FencedWrite) { w.Set["amount = 0; --"] = 1 }), 1},
		{"Key column with a space", with(func(w *cassandra.FencedWrite) { w.Key[`"acc ount"`] = "a" }), 1},
		{"empty quoted column", with(func(w *cassandra.FencedWrite) { w.Set[`""`] = 1 }), 1},
		{"bad fence column", with(func(w *cassandra.FencedWrite) { w.Column = "fence!" }), 1},
		{"fence column in Set", with(func(w *cassandra.FencedWrite) { w.Set["fence"] = int64(9) }), 1},
		{"fence column in Set, other case", with(func(w *cassandra.FencedWrite) { w.Set["FENCE"] = int64(9) }), 1},
		{"named fence column in Key", with(func(w *cassandra.FencedWrite) { w.Column = "entry" }), 1},
		{"column twice by case", with(func(w *cassandra.FencedWrite) { w.Set["Amount"] = int64(2) }), 1},
		{"column twice, quoted", with(func(w *cassandra.FencedWrite) { w.Set[`"amount"`] = int64(2) }), 1},
		{"column in Key and Set", with(func(w *cassandra.FencedWrite) { w.Set["entry"] = 2 }), 1},
		{"zero fence", ok, 0},
		{"negative fence", ok, -5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := cassandra.FencedUpdate(t.Context(), nil, tc.w, tc.fence)
			if !errors.Is(err, idem.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		// Also valid: a quoted name differs from the unquoted one by case.
		w := with(func(w *cassandra.FencedWrite) { w.Set[`"Amount"`] = int64(2) })
		err := cassandra.FencedUpdate(t.Context(), nil, w, 1)
		if err == nil || errors.Is(err, idem.ErrInvalid) || !strings.Contains(err.Error(), "needs a session") {
			t.Fatalf("got %v, want only the missing session", err)
		}
	})
	t.Run("options", func(t *testing.T) {
		err := cassandra.FencedUpdate(t.Context(), nil, ok, 1, cassandra.WithSerialConsistency(gocql.Quorum))
		if err == nil || strings.Contains(err.Error(), "needs a session") {
			t.Fatalf("a serial consistency of QUORUM: got %v, want it rejected", err)
		}
	})
}

func clone(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestFenceResendAfterLostResponse: the write lands but its response is
// lost (dropped until the client times out, or its connection cut). The
// caller gets ErrUnknownOutcome; sending the same write with the same
// fence again succeeds over its own copy, and nothing else changes; once a
// later claim has written, the copy is refused.
func TestFenceResendAfterLostResponse(t *testing.T) {
	t.Parallel()
	session, ks := testenv.Cassandra(t)
	e := &fenceEnv{session: session, ledger: createTable(t, session, ks, ledgerCQL)}
	p := newArmedProxy(t)
	proxied := proxiedSession(t, p.Proxy, 1500*time.Millisecond)
	for i, fault := range []faultproxy.Fault{faultproxy.DropResponse, faultproxy.CutAtResponse} {
		t.Run(fault.String(), func(t *testing.T) {
			ctx, account := t.Context(), "lost/"+fault.String()
			base := int64(10 * (i + 1))
			// The row has a fence, so the write is one statement, prepared
			// here: the armed fault hits its execution.
			if err := cassandra.FencedUpdate(ctx, proxied, e.entry(account, "before", 1), base); err != nil {
				t.Fatal(err)
			}
			w := e.entry(account, "a", 100)
			before := p.Stats()
			p.arm(fault)
			err := cassandra.FencedUpdate(ctx, proxied, w, base+1)
			waitApplied(t, p.Proxy, before, fault)
			if !errors.Is(err, idem.ErrUnknownOutcome) {
				t.Fatalf("got %v, want ErrUnknownOutcome", err)
			}
			e.wantRow(t, account, "a", 100, base+1) // it did land
			if err := cassandra.FencedUpdate(ctx, session, w, base+1); err != nil {
				t.Fatalf("the same write sent again: %v", err)
			}
			e.wantRow(t, account, "a", 100, base+1)
			if err := cassandra.FencedUpdate(ctx, session, e.entry(account, "b", 200), base+2); err != nil {
				t.Fatalf("a later claim's write: %v", err)
			}
			err = cassandra.FencedUpdate(ctx, session, w, base+1)
			wantFenced(t, err, base+1, base+2)
			e.wantRow(t, account, "b", 200, base+2)
		})
	}
}
