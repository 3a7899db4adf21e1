package cassandra

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// faulty wraps the real gocql executor and fails chosen conditional writes
// the way a network or a coordinator does: after the statement ran on the
// server (a lost response) or without sending it at all (the write died
// before reaching a quorum). Reads pass through.
type faulty struct {
	executor
	mu     sync.Mutex
	faults []fault
	sent   atomic.Int64 // conditional writes that reached the server
	reads  atomic.Int64
}

type fault struct {
	apply  bool   // run the statement on the server, then fail
	before func() // runs first: a competitor's write, say
	err    error
}

func (f *faulty) add(fs ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fs...)
}

func (f *faulty) cas(ctx context.Context, stmt string, args ...any) (bool, record, error) {
	f.mu.Lock()
	var ft *fault
	if len(f.faults) > 0 {
		ft = &f.faults[0]
		f.faults = f.faults[1:]
	}
	f.mu.Unlock()
	if ft == nil {
		f.sent.Add(1)
		return f.executor.cas(ctx, stmt, args...)
	}
	if ft.before != nil {
		ft.before()
	}
	if ft.apply {
		f.sent.Add(1)
		if _, _, err := f.executor.cas(ctx, stmt, args...); err != nil {
			return false, record{}, fmt.Errorf("faulty: the real write failed: %w", err)
		}
	}
	return false, record{}, ft.err
}

func (f *faulty) read(ctx context.Context, cl gocql.Consistency, stmt string, args ...any) (record, error) {
	f.reads.Add(1)
	return f.executor.read(ctx, cl, stmt, args...)
}

// realStores returns a store over a fresh table whose writes go through f,
// and a plain store on the same table to set up and check state.
func realStores(t *testing.T) (faultyStore *Store, f *faulty, plain *Store) {
	t.Helper()
	session, ks := testenv.Cassandra(t)
	table := ks + ".faults"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := CreateTable(ctx, session, table); err != nil {
		t.Fatal(err)
	}
	plain, err := New(session, table)
	if err != nil {
		t.Fatal(err)
	}
	f = &faulty{executor: plain.exec}
	faultyStore, err = New(session, table, withExecutor(f))
	if err != nil {
		t.Fatal(err)
	}
	return faultyStore, f, plain
}

// realOp is a kernel op on a key that setup prepares; check verifies the
// state after the op applied exactly once (applied) or not at all.
type realOp struct {
	name  string
	setup func(ctx context.Context, s *Store, key string) error
	call  func(ctx context.Context, s *Store, key string) (idem.Item, bool, error)
	// competitor writes what wins the op's slot when it runs first.
	competitor func(ctx context.Context, s *Store, key string) error
	want       func(applied bool) (idem.Item, bool) // the stored item, and whether one exists
}

func atV4(ctx context.Context, s *Store, key string) error {
	_, _, err := s.Upsert(ctx, key, []byte("old"), 4, time.Hour)
	return err
}

var realOps = []realOp{
	{
		name:  "PutIfAbsent",
		setup: func(context.Context, *Store, string) error { return nil },
		call: func(ctx context.Context, s *Store, key string) (idem.Item, bool, error) {
			it, err := s.PutIfAbsent(ctx, key, []byte("new"), time.Hour)
			return it, err == nil, err
		},
		competitor: func(ctx context.Context, s *Store, key string) error {
			_, err := s.PutIfAbsent(ctx, key, []byte("other"), time.Hour)
			return err
		},
		want: func(applied bool) (idem.Item, bool) {
			return idem.Item{Value: []byte("new"), Version: 1}, applied
		},
	},
	{
		name:  "CompareAndSwap",
		setup: atV4,
		call: func(ctx context.Context, s *Store, key string) (idem.Item, bool, error) {
			it, err := s.CompareAndSwap(ctx, key, 4, []byte("new"), time.Hour)
			return it, err == nil, err
		},
		competitor: func(ctx context.Context, s *Store, key string) error {
			_, err := s.CompareAndSwap(ctx, key, 4, []byte("other"), time.Hour)
			return err
		},
		want: func(applied bool) (idem.Item, bool) {
			if applied {
				return idem.Item{Value: []byte("new"), Version: 5}, true
			}
			return idem.Item{Value: []byte("old"), Version: 4}, true
		},
	},
	{
		name:  "CompareAndDelete",
		setup: atV4,
		call: func(ctx context.Context, s *Store, key string) (idem.Item, bool, error) {
			err := s.CompareAndDelete(ctx, key, 4)
			return idem.Item{}, err == nil, err
		},
		want: func(applied bool) (idem.Item, bool) {
			return idem.Item{Value: []byte("old"), Version: 4}, !applied
		},
	},
	{
		name:  "Upsert",
		setup: atV4,
		call: func(ctx context.Context, s *Store, key string) (idem.Item, bool, error) {
			return s.Upsert(ctx, key, []byte("new"), 9, time.Hour)
		},
		competitor: func(ctx context.Context, s *Store, key string) error {
			_, _, err := s.Upsert(ctx, key, []byte("other"), 12, time.Hour)
			return err
		},
		want: func(applied bool) (idem.Item, bool) {
			if applied {
				return idem.Item{Value: []byte("new"), Version: 9}, true
			}
			return idem.Item{Value: []byte("old"), Version: 4}, true
		},
	},
}

func checkStored(t *testing.T, ctx context.Context, s *Store, key string, want idem.Item, exists bool) {
	t.Helper()
	got, err := s.Get(ctx, key)
	switch {
	case !exists && !errors.Is(err, idem.ErrNotFound):
		t.Fatalf("Get: got %+v, %v; want ErrNotFound", got, err)
	case exists && err != nil:
		t.Fatalf("Get: %v", err)
	case exists && (string(got.Value) != string(want.Value) || got.Version != want.Version):
		t.Fatalf("stored: got %q v%d, want %q v%d", got.Value, got.Version, want.Value, want.Version)
	}
}

// TestFaultsOnCassandra runs every kernel write against a real Cassandra
// with every error that leaves an LWT's outcome unknown, once after the
// write applied on the server and once when it never ran. Either way the
// call must succeed (except a deletion that applied, which leaves nothing
// to recognise and is reported as unknown), and the write must be stored
// exactly once.
func TestFaultsOnCassandra(t *testing.T) {
	s, f, plain := realStores(t)
	for _, o := range realOps {
		for _, e := range uncertainErrors {
			for _, applyFirst := range []bool{true, false} {
				name := fmt.Sprintf("%s/%s/applied=%v", o.name, e.name, applyFirst)
				t.Run(name, func(t *testing.T) {
					ctx := context.Background()
					key := "fault/" + name
					if err := o.setup(ctx, plain, key); err != nil {
						t.Fatal(err)
					}
					f.add(fault{apply: applyFirst, err: e.err})
					sent0, reads0 := f.sent.Load(), f.reads.Load()
					it, applied, err := o.call(ctx, s, key)
					want, exists := o.want(true)
					if o.name == "CompareAndDelete" && applyFirst {
						// Nothing is left to recognise a deletion by: the
						// store must say so, and the key stays deleted.
						if !errors.Is(err, idem.ErrUnknownOutcome) {
							t.Fatalf("got applied %v, err %v; want ErrUnknownOutcome", applied, err)
						}
						checkStored(t, ctx, plain, key, want, exists)
						return
					}
					if err != nil || !applied {
						t.Fatalf("got applied %v, err %v; want the write settled as applied", applied, err)
					}
					if exists && (string(it.Value) != string(want.Value) || it.Version != want.Version) {
						t.Errorf("returned %q v%d, want %q v%d", it.Value, it.Version, want.Value, want.Version)
					}
					checkStored(t, ctx, plain, key, want, exists)
					// One real write either way: the first attempt, or the
					// retry after the read proved the first never ran.
					if sent := f.sent.Load() - sent0; sent != 1 {
						t.Errorf("conditional writes on the server: got %d, want 1", sent)
					}
					if reads := f.reads.Load() - reads0; reads != 1 {
						t.Errorf("settling reads: got %d, want 1", reads)
					}
				})
			}
		}
	}
}

// TestFaultsTwiceOnCassandra: the first attempt and the retry both die
// before reaching the server. The store must say the outcome is unknown,
// and nothing may be written.
func TestFaultsTwiceOnCassandra(t *testing.T) {
	s, f, plain := realStores(t)
	for _, o := range realOps {
		t.Run(o.name, func(t *testing.T) {
			ctx, key := context.Background(), "twice/"+o.name
			if err := o.setup(ctx, plain, key); err != nil {
				t.Fatal(err)
			}
			f.add(fault{err: &gocql.RequestErrCASWriteUnknown{}}, fault{err: &gocql.RequestErrWriteTimeout{WriteType: "CAS"}})
			_, _, err := o.call(ctx, s, key)
			var ue *idem.UnknownOutcomeError
			if !errors.As(err, &ue) || ue.Key != key || ue.Op != o.name {
				t.Fatalf("got %v, want an *idem.UnknownOutcomeError for %s %q", err, o.name, key)
			}
			want, exists := o.want(false)
			checkStored(t, ctx, plain, key, want, exists)
		})
	}
}

// TestFaultsLostRace: the op's write dies unseen while a competitor takes
// its slot. The settling read shows the competitor: a conflict carrying its
// item (Upsert: not applied), never an unknown outcome.
func TestFaultsLostRace(t *testing.T) {
	s, f, plain := realStores(t)
	for _, o := range realOps {
		if o.competitor == nil {
			continue
		}
		t.Run(o.name, func(t *testing.T) {
			ctx, key := context.Background(), "lost/"+o.name
			if err := o.setup(ctx, plain, key); err != nil {
				t.Fatal(err)
			}
			f.add(fault{
				before: func() {
					if err := o.competitor(ctx, plain, key); err != nil {
						t.Errorf("competitor: %v", err)
					}
				},
				err: gocql.ErrTimeoutNoResponse,
			})
			it, applied, err := o.call(ctx, s, key)
			if o.name == "Upsert" {
				if err != nil || applied || string(it.Value) != "other" {
					t.Fatalf("got %q, applied %v, err %v; want not applied, the competitor's item", it.Value, applied, err)
				}
				return
			}
			var ce *idem.ConflictError
			if !errors.As(err, &ce) || !ce.Exists || string(ce.Current.Value) != "other" {
				t.Fatalf("got %v, want a conflict carrying the competitor's item", err)
			}
		})
	}
}
