package cassandra

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/idem"
)

// scripted is an executor that answers from a script, one step per call,
// and records what it was asked. It tests the Store's decisions (which
// statement, what to make of each answer) without a server; the same paths
// run against a real Cassandra in fault_test.go.
type scripted struct {
	t      *testing.T
	mu     sync.Mutex
	steps  []answer
	calls  []call
	lastID []byte // the write_id of the last conditional write
}

// ownID in a scripted row stands for the write_id of the last conditional
// write: the row is the op's own write.
var ownID = []byte("own write")

// answer is one scripted answer: to a cas call (read == false) or a read.
type answer struct {
	read    bool
	applied bool
	cur     record
	err     error
}

type call struct {
	read bool
	stmt string
	cl   gocql.Consistency
	args []any
	ctx  error // the context's error when called
}

func (s *scripted) next(c call) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	if len(s.steps) == 0 {
		s.t.Fatalf("unscripted call %d: read=%v %s", len(s.calls), c.read, c.stmt)
	}
	st := s.steps[0]
	s.steps = s.steps[1:]
	if !c.read && strings.HasPrefix(c.stmt, "UPDATE") {
		s.lastID = c.args[4].([]byte)
	}
	if string(st.cur.writeID) == string(ownID) {
		st.cur.writeID = s.lastID
	}
	if st.read != c.read {
		s.t.Fatalf("call %d: got read=%v (%s), script wants read=%v", len(s.calls), c.read, c.stmt, st.read)
	}
	return st
}

func (s *scripted) cas(ctx context.Context, stmt string, args ...any) (bool, record, error) {
	st := s.next(call{stmt: stmt, args: args, ctx: ctx.Err()})
	return st.applied, st.cur, st.err
}

func (s *scripted) read(ctx context.Context, cl gocql.Consistency, stmt string, args ...any) (record, error) {
	st := s.next(call{read: true, stmt: stmt, cl: cl, args: args, ctx: ctx.Err()})
	return st.cur, st.err
}

func (s *scripted) schema(context.Context, string) error { return nil }

func (s *scripted) uncertain(err error) bool { return uncertainGocql(err) }

// Script steps.
func casApplied() answer           { return answer{applied: true} }
func casRefused(cur record) answer { return answer{cur: cur} }
func casFails(err error) answer    { return answer{err: err} }
func readsRow(cur record) answer   { return answer{read: true, cur: cur} }
func readFails(err error) answer   { return answer{read: true, err: err} }
func row(value string, v int64) record {
	return record{found: true, value: []byte(value), version: v, expiresAt: math.MaxInt64}
}

// own marks r as the op's own write (see ownID).
func own(r record) record { r.writeID = ownID; return r }

func expiredRow(value string, v int64) record {
	return record{found: true, value: []byte(value), version: v, expiresAt: 1000}
}

var absent = record{}

// The errors that leave an LWT's outcome unknown, as the driver returns them.
var uncertainErrors = []struct {
	name string
	err  error
}{
	{"WriteTimeout CAS", &gocql.RequestErrWriteTimeout{WriteType: "CAS"}},
	{"WriteTimeout SIMPLE", &gocql.RequestErrWriteTimeout{WriteType: "SIMPLE"}}, // commit phase, protocol v5
	{"WriteFailure", &gocql.RequestErrWriteFailure{WriteType: "CAS"}},
	{"CAS_WRITE_UNKNOWN", &gocql.RequestErrCASWriteUnknown{}},
	{"Unavailable", &gocql.RequestErrUnavailable{}},
	{"ReadTimeout", &gocql.RequestErrReadTimeout{}},
	{"client timeout", gocql.ErrTimeoutNoResponse},
	{"connection closed", gocql.ErrConnectionClosed},
	{"context deadline", context.DeadlineExceeded},
	{"wrapped", fmt.Errorf("dial: %w", gocql.ErrConnectionClosed)},
}

// The errors that prove nothing was executed.
var preSendErrors = []struct {
	name string
	err  error
}{
	{"no connections", gocql.ErrNoConnections},
	{"session closed", gocql.ErrSessionClosed},
	{"no streams", gocql.ErrNoStreams},
	{"invalid", &gocql.RequestErrInvalid{}},
	{"syntax", &gocql.RequestErrSyntax{}},
	{"unauthorized", &gocql.RequestErrUnauthorized{}},
	{"overloaded", &gocql.RequestErrOverloaded{}},
	{"bootstrapping", &gocql.RequestErrBootstrapping{}},
	{"unprepared", &gocql.RequestErrUnprepared{}},
	{"marshal", gocql.MarshalError("cannot marshal")},
}

func TestUncertainGocql(t *testing.T) {
	t.Parallel()
	for _, tc := range uncertainErrors {
		if !uncertainGocql(tc.err) {
			t.Errorf("%s: got certain, want uncertain", tc.name)
		}
	}
	for _, tc := range preSendErrors {
		if uncertainGocql(tc.err) {
			t.Errorf("%s: got uncertain, want certain (nothing executed)", tc.name)
		}
	}
}

const key = "k"

// op is a kernel call on a store, reduced to (item, applied, error).
type op struct {
	name string
	call func(ctx context.Context, s *Store) (idem.Item, bool, error)
	// mine is the row a SERIAL read returns after the op applied (the
	// store holds "old" at version 4 before); unset for CompareAndDelete,
	// which leaves nothing to recognise.
	mine record
	// others are rows that prove nothing about the op: the row exactly as
	// its condition requires (it may not have applied yet, or applied and
	// been undone by a delete and re-create), a competitor's write in its
	// slot (it may have applied first), an identical write by another
	// call, a row that is not an item.
	others []record
}

var stray = record{stray: []any{[]byte("x"), ptr(int64(1)), nil, nil}}

func ptr[T any](v T) *T { return &v }

var ops = []op{
	{
		name: "PutIfAbsent",
		call: func(ctx context.Context, s *Store) (idem.Item, bool, error) {
			it, err := s.PutIfAbsent(ctx, key, []byte("new"), 0)
			return it, err == nil, err
		},
		mine:   own(row("new", 1_800_000_000_000_000)),
		others: []record{absent, expiredRow("old", 4), row("other", 1_800_000_000_000_000), row("new", 1_800_000_000_000_000), stray},
	},
	{
		name: "CompareAndSwap",
		call: func(ctx context.Context, s *Store) (idem.Item, bool, error) {
			it, err := s.CompareAndSwap(ctx, key, 4, []byte("new"), 0)
			return it, err == nil, err
		},
		mine:   own(row("new", 5)),
		others: []record{row("old", 4), row("other", 5), row("new", 5), row("other", 6), absent, stray},
	},
	{
		name: "CompareAndDelete",
		call: func(ctx context.Context, s *Store) (idem.Item, bool, error) {
			err := s.CompareAndDelete(ctx, key, 4)
			return idem.Item{}, err == nil, err
		},
	},
	{
		name: "Upsert",
		call: func(ctx context.Context, s *Store) (idem.Item, bool, error) {
			return s.Upsert(ctx, key, []byte("new"), 9, 0)
		},
		mine:   own(row("new", 9)),
		others: []record{row("old", 4), row("other", 12), row("new", 9), absent, stray},
	},
}

func scriptedStore(t *testing.T, steps ...answer) (*Store, *scripted) {
	t.Helper()
	ex := &scripted{t: t, steps: steps}
	s, err := New(nil, "ks.tbl", withExecutor(ex), WithResolveTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if len(ex.steps) != 0 {
			t.Errorf("%d scripted steps left unused", len(ex.steps))
		}
	})
	return s, ex
}

func wantUnknown(t *testing.T, err error, cause error) {
	t.Helper()
	if !errors.Is(err, idem.ErrUnknownOutcome) {
		t.Fatalf("got error %v, want one matching idem.ErrUnknownOutcome", err)
	}
	if !strings.Contains(err.Error(), strconv.Quote(key)) {
		t.Fatalf("got %v, want the error to name the key %q", err, key)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Errorf("unknown outcome %v does not wrap the driver error %v", err, cause)
	}
}

// TestResolveOwnWrite: every uncertain error on every op, where the write
// did apply: one SERIAL read finds its write_id and the call succeeds.
func TestResolveOwnWrite(t *testing.T) {
	t.Parallel()
	for _, o := range ops {
		if !o.mine.found {
			continue // CompareAndDelete: see TestResolveDelete
		}
		for _, e := range uncertainErrors {
			t.Run(o.name+"/"+e.name, func(t *testing.T) {
				s, ex := scriptedStore(t, casFails(e.err), readsRow(o.mine))
				it, applied, err := o.call(context.Background(), s)
				if err != nil || !applied {
					t.Fatalf("got applied %v, err %v; want the own write recognised", applied, err)
				}
				if string(it.Value) != string(o.mine.value) || it.Version != o.mine.version {
					t.Errorf("got item %q v%d, want %q v%d", it.Value, it.Version, o.mine.value, o.mine.version)
				}
				if rd := ex.calls[1]; rd.cl != gocql.Serial || !strings.HasPrefix(rd.stmt, "SELECT") {
					t.Errorf("settling read: got %q at %v, want a SELECT at SERIAL", rd.stmt, rd.cl)
				}
			})
		}
	}
}

// TestResolveOwnWriteExpired: the write applied and its item expired before
// the settling read: it applied all the same.
func TestResolveOwnWriteExpired(t *testing.T) {
	t.Parallel()
	s, _ := scriptedStore(t, casFails(gocql.ErrTimeoutNoResponse), readsRow(own(expiredRow("new", 5))))
	if _, err := s.CompareAndSwap(context.Background(), key, 4, []byte("new"), time.Second); err != nil {
		t.Fatalf("got %v, want the own write recognised", err)
	}
}

// TestResolveNeverResends: whatever the settling read shows other than the
// write's own write_id, the outcome is unknown and nothing is sent again.
// A resend would apply a second time after a delete and re-create had
// made its condition true again (the script fails the test on any call
// after the read).
func TestResolveNeverResends(t *testing.T) {
	t.Parallel()
	for _, o := range ops {
		for i, cur := range o.others {
			t.Run(fmt.Sprintf("%s/%d", o.name, i), func(t *testing.T) {
				cause := &gocql.RequestErrCASWriteUnknown{}
				s, _ := scriptedStore(t, casFails(cause), readsRow(cur))
				_, _, err := o.call(context.Background(), s)
				wantUnknown(t, err, cause)
			})
		}
	}
}

// TestResolveDelete: a CompareAndDelete leaves nothing to recognise, so
// its unknown outcome is reported at once: no read, no resend.
func TestResolveDelete(t *testing.T) {
	t.Parallel()
	for _, e := range uncertainErrors {
		t.Run(e.name, func(t *testing.T) {
			s, _ := scriptedStore(t, casFails(e.err))
			wantUnknown(t, s.CompareAndDelete(context.Background(), key, 4), e.err)
		})
	}
}

// TestResolveReadFails: the SERIAL read is tried three times; when it never
// answers, the outcome is unknown and the error keeps the driver's error.
func TestResolveReadFails(t *testing.T) {
	t.Parallel()
	for _, o := range ops {
		if !o.mine.found {
			continue
		}
		t.Run(o.name, func(t *testing.T) {
			rt := &gocql.RequestErrReadTimeout{}
			s, _ := scriptedStore(t, casFails(gocql.ErrConnectionClosed), readFails(rt), readFails(rt), readFails(rt))
			_, _, err := o.call(context.Background(), s)
			wantUnknown(t, err, gocql.ErrConnectionClosed)
		})
	}
}

// TestResolveReadRecovers: a SERIAL read that times out once is tried again.
func TestResolveReadRecovers(t *testing.T) {
	t.Parallel()
	s, _ := scriptedStore(t, casFails(gocql.ErrConnectionClosed), readFails(&gocql.RequestErrReadTimeout{}), readsRow(own(row("new", 1))))
	if _, err := s.PutIfAbsent(context.Background(), key, []byte("new"), 0); err != nil {
		t.Fatal(err)
	}
}

// TestPreSendErrors: errors that prove nothing was executed are returned as
// they are: no read, no retry, not ErrUnknownOutcome.
func TestPreSendErrors(t *testing.T) {
	t.Parallel()
	for _, o := range ops {
		for _, e := range preSendErrors {
			t.Run(o.name+"/"+e.name, func(t *testing.T) {
				s, _ := scriptedStore(t, casFails(e.err))
				_, _, err := o.call(context.Background(), s)
				if err == nil || !errors.Is(err, e.err) || errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, idem.ErrConflict) {
					t.Fatalf("got %v, want the driver's error %v, not an unknown outcome", err, e.err)
				}
				if !strings.Contains(err.Error(), o.name) || !strings.Contains(err.Error(), `"k"`) {
					t.Errorf("error %q does not name the operation and the key", err)
				}
			})
		}
	}
}

// TestCancelledBeforeSend: a context that is already done sends nothing.
func TestCancelledBeforeSend(t *testing.T) {
	t.Parallel()
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			s, _ := scriptedStore(t)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, _, err := o.call(ctx, s)
			if !errors.Is(err, context.Canceled) || errors.Is(err, idem.ErrUnknownOutcome) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
		})
	}
}

// cancelling is an executor whose cas cancels the caller's context and
// then fails as a client would: the request was sent.
type cancelling struct {
	*scripted
	cancel context.CancelFunc
}

func (c cancelling) cas(ctx context.Context, stmt string, args ...any) (bool, record, error) {
	c.cancel()
	return c.scripted.cas(ctx, stmt, args...)
}

// TestCancelledAfterSend: the caller gives up while the write is in flight.
// The settling read still runs (detached from the cancellation); the write
// is recognised if it applied, and is never sent again.
func TestCancelledAfterSend(t *testing.T) {
	t.Parallel()
	for _, o := range ops {
		if !o.mine.found {
			continue // CompareAndDelete: no read, see TestResolveDelete
		}
		for _, tc := range []struct {
			name    string
			cur     record
			applied bool
		}{
			{"applied", o.mine, true},
			{"not shown", o.others[0], false},
		} {
			t.Run(o.name+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				ex := &scripted{t: t, steps: []answer{casFails(context.Canceled), readsRow(tc.cur)}}
				s, err := New(nil, "ks.tbl", withExecutor(cancelling{ex, cancel}))
				if err != nil {
					t.Fatal(err)
				}
				_, applied, err := o.call(ctx, s)
				if tc.applied && (err != nil || !applied) {
					t.Fatalf("got applied %v, err %v; want the own write recognised", applied, err)
				}
				if !tc.applied {
					wantUnknown(t, err, context.Canceled)
				}
				if rd := ex.calls[1]; rd.ctx != nil {
					t.Errorf("the settling read ran with a done context: %v", rd.ctx)
				}
			})
		}
	}
}

// TestStatements checks each op's first statement and its conditions.
func TestStatements(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o    op
		want string
	}{
		{ops[0], "IF version = null AND value = null AND expires_at = null AND write_id = null"},
		{ops[1], "IF version = ? AND expires_at > ? AND value != null AND write_id != 0x0000000000000000000000000000000000"},
		{ops[2], "DELETE FROM ks.tbl WHERE key = ? IF version = ? AND expires_at > ? AND value != null AND write_id != 0x0000000000000000000000000000000000"},
		{ops[3], "IF version < ? AND expires_at > ? AND value != null AND write_id != 0x0000000000000000000000000000000000"},
	} {
		s, ex := scriptedStore(t, casApplied())
		if _, _, err := tc.o.call(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		if got := ex.calls[0].stmt; !strings.HasSuffix(got, tc.want) {
			t.Errorf("%s: got %q, want it to end in %q", tc.o.name, got, tc.want)
		}
	}
}

// TestUpsertSteps walks Upsert through the rows it may meet.
func TestUpsertSteps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		steps       []answer
		wantApplied bool
		wantStmts   []string // "create", "replace", "raise"
	}{
		{"lower", []answer{casApplied()}, true, []string{"raise"}},
		{"absent", []answer{casRefused(absent), casApplied()}, true, []string{"raise", "create"}},
		{"expired", []answer{casRefused(expiredRow("old", 20)), casApplied()}, true, []string{"raise", "replace"}},
		{"higher", []answer{casRefused(row("v", 12))}, false, []string{"raise"}},
		{"equal", []answer{casRefused(row("v", 9))}, false, []string{"raise"}},
		{"created lower meanwhile", []answer{casRefused(absent), casRefused(row("v", 3)), casApplied()}, true, []string{"raise", "create", "raise"}},
		{"created higher meanwhile", []answer{casRefused(absent), casRefused(row("v", 30))}, false, []string{"raise", "create"}},
		{"not an item", []answer{casRefused(stray), casApplied()}, true, []string{"raise", "overwrite"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ex := scriptedStore(t, tc.steps...)
			_, applied, err := s.Upsert(context.Background(), key, []byte("new"), 9, time.Minute)
			if err != nil || applied != tc.wantApplied {
				t.Fatalf("got applied %v, err %v; want applied %v", applied, err, tc.wantApplied)
			}
			checkSteps(t, s, ex, tc.wantStmts)
		})
	}
}

// TestPutIfAbsentSteps walks PutIfAbsent through the rows it may meet.
func TestPutIfAbsentSteps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		steps       []answer
		wantApplied bool
		wantExists  bool
		wantStmts   []string
	}{
		{"absent", []answer{casApplied()}, true, false, []string{"create"}},
		{"live", []answer{casRefused(row("v", 3))}, false, true, []string{"create"}},
		{"expired", []answer{casRefused(expiredRow("old", 2)), casApplied()}, true, false, []string{"create", "replace"}},
		{"expired then deleted", []answer{casRefused(expiredRow("old", 2)), casRefused(absent), casApplied()}, true, false, []string{"create", "replace", "create"}},
		{"not an item", []answer{casRefused(stray), casApplied()}, true, false, []string{"create", "overwrite"}},
		{"not an item, then live", []answer{casRefused(stray), casRefused(row("v", 3))}, false, true, []string{"create", "overwrite"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ex := scriptedStore(t, tc.steps...)
			_, err := s.PutIfAbsent(context.Background(), key, []byte("new"), time.Minute)
			var ce *idem.ConflictError
			switch {
			case tc.wantApplied && err != nil:
				t.Fatalf("got %v, want applied", err)
			case !tc.wantApplied && (!errors.As(err, &ce) || ce.Exists != tc.wantExists):
				t.Fatalf("got %v, want a conflict with Exists %v", err, tc.wantExists)
			}
			checkSteps(t, s, ex, tc.wantStmts)
		})
	}
}

// TestContention: a row that keeps changing under PutIfAbsent ends in
// ErrContention after maxStatements writes, with nothing written.
func TestContention(t *testing.T) {
	t.Parallel()
	var steps []answer
	for i := range maxStatements {
		if i%2 == 0 {
			steps = append(steps, casRefused(expiredRow("x", 1)))
		} else {
			steps = append(steps, casRefused(absent))
		}
	}
	s, _ := scriptedStore(t, steps...)
	_, err := s.PutIfAbsent(context.Background(), key, []byte("new"), 0)
	if !errors.Is(err, ErrContention) || errors.Is(err, idem.ErrUnknownOutcome) {
		t.Fatalf("got %v, want ErrContention", err)
	}
}

func checkSteps(t *testing.T, s *Store, ex *scripted, want []string) {
	t.Helper()
	names := map[string]string{s.q.create: "create", s.q.replace: "replace", s.q.overwrite: "overwrite", s.q.raise: "raise", s.q.swap: "swap", s.q.delete: "delete"}
	var got []string
	for _, c := range ex.calls {
		got = append(got, names[c.stmt])
		// The overwrite's condition is the row as the previous statement
		// returned it, NULLs included.
		if c.stmt == s.q.overwrite && fmt.Sprint(c.args[len(c.args)-4:]) != fmt.Sprint(stray.stray) {
			t.Errorf("overwrite condition: got %v, want the row as read, %v", c.args[len(c.args)-4:], stray.stray)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got statements %v, want %v", got, want)
	}
}

// TestPutIfAbsentFreshVersion: PutIfAbsent writes a fresh version, at least
// the clock in microseconds and above every version returned before, the
// same one in each statement of its attempt (here over an expired row),
// and returns it.
func TestPutIfAbsentFreshVersion(t *testing.T) {
	t.Parallel()
	before := time.Now().Add(-time.Second).UnixMicro() // the process clock may drift a little from the wall clock
	s, ex := scriptedStore(t, casApplied(), casRefused(expiredRow("old", 4)), casApplied())
	first, err := s.PutIfAbsent(context.Background(), key, []byte("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.PutIfAbsent(context.Background(), key, []byte("b"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if first.Version < before || second.Version <= first.Version {
		t.Errorf("versions: got %d then %d, want fresh ones: at least %d, increasing", first.Version, second.Version, before)
	}
	for i, want := range []int64{first.Version, second.Version, second.Version} {
		if got := ex.calls[i].args[2]; got != want {
			t.Errorf("statement %d writes version %v, want %d", i, got, want)
		}
	}
}
