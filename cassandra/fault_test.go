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
// before reaching a quorum, or is still on its way). Reads pass through.
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
	after  func() // runs after the statement applied, before the error returns: the gap of a lost response
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
		applied, _, err := f.executor.cas(ctx, stmt, args...)
		if err != nil {
			return false, record{}, fmt.Errorf("faulty: the real write failed: %w", err)
		}
		if !applied {
			return false, record{}, errors.New("faulty: the real write was refused; the test set it up wrong")
		}
		if ft.after != nil {
			ft.after()
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

// realOp is a kernel op on a key that setup prepares; want gives the state
// after the op applied exactly once (applied) or not at all.
type realOp struct {
	name  string
	setup func(ctx context.Context, s *Store, key string) error
	call  func(ctx context.Context, s *Store, key string) (idem.Item, bool, error)
	// competitor writes what wins the op's slot when it runs first.
	competitor func(ctx context.Context, s *Store, key string) error
	// want is the stored item, and whether one exists; Version 0 stands
	// for a fresh version (PutIfAbsent).
	want func(applied bool) (idem.Item, bool)
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
			return idem.Item{Value: []byte("new")}, applied
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

// checkStored checks the item at key; a want.Version of 0 stands for a
// fresh version, at least fresh (microseconds since 1970).
func checkStored(t *testing.T, ctx context.Context, s *Store, key string, want idem.Item, exists bool, fresh int64) {
	t.Helper()
	got, err := s.Get(ctx, key)
	if want.Version == 0 && got.Version >= fresh {
		want.Version = got.Version
	}
	switch {
	case !exists && !errors.Is(err, idem.ErrNotFound):
		t.Fatalf("Get: got %+v, %v; want ErrNotFound", got, err)
	case exists && err != nil:
		t.Fatalf("Get: %v", err)
	case exists && (string(got.Value) != string(want.Value) || got.Version != want.Version):
		t.Fatalf("stored: got %q v%d, want %q v%d (0: fresh, at least %d)", got.Value, got.Version, want.Value, want.Version, fresh)
	}
}

// TestFaultsOnCassandra runs every kernel write against a real Cassandra
// with every error that leaves an LWT's outcome unknown, injected through
// the executor seam: once after the statement applied on the server (its
// answer replaced by the error), once when it never ran. Applied, the
// SERIAL read finds the write's own write_id and the call succeeds (a
// deletion leaves nothing to recognise: unknown). Never run, nothing proves
// it will not still arrive: unknown, and the store sends nothing again.
func TestFaultsOnCassandra(t *testing.T) {
	t.Parallel()
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
					sent0, reads0, fresh := f.sent.Load(), f.reads.Load(), time.Now().Add(-time.Second).UnixMicro()
					it, applied, err := o.call(ctx, s, key)
					want, exists := o.want(applyFirst)
					if o.name == "CompareAndDelete" || !applyFirst {
						if !errors.Is(err, idem.ErrUnknownOutcome) {
							t.Fatalf("got applied %v, err %v; want ErrUnknownOutcome", applied, err)
						}
					} else {
						if err != nil || !applied {
							t.Fatalf("got applied %v, err %v; want the write settled as applied", applied, err)
						}
						if string(it.Value) != string(want.Value) || (want.Version != 0 && it.Version != want.Version) || it.Version < fresh && want.Version == 0 {
							t.Errorf("returned %q v%d, want %q v%d", it.Value, it.Version, want.Value, want.Version)
						}
					}
					checkStored(t, ctx, plain, key, want, exists, fresh)
					wantSent, wantReads := int64(0), int64(1)
					if applyFirst {
						wantSent = 1
					}
					if o.name == "CompareAndDelete" {
						wantReads = 0
					}
					if sent := f.sent.Load() - sent0; sent != wantSent {
						t.Errorf("conditional writes on the server: got %d, want %d", sent, wantSent)
					}
					if reads := f.reads.Load() - reads0; reads != wantReads {
						t.Errorf("settling reads: got %d, want %d", reads, wantReads)
					}
				})
			}
		}
	}
}

// TestFaultsCompetitorFirst: the op's write dies unseen while a competitor
// takes its slot. The settling read shows the competitor, which does not
// prove that the op's write will not still land (it may be in flight): an
// unknown outcome, and the competitor's item is left alone.
func TestFaultsCompetitorFirst(t *testing.T) {
	t.Parallel()
	s, f, plain := realStores(t)
	for _, o := range realOps {
		if o.competitor == nil {
			continue
		}
		t.Run(o.name, func(t *testing.T) {
			ctx, key := context.Background(), "competitor/"+o.name
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
			_, _, err := o.call(ctx, s, key)
			if !errors.Is(err, idem.ErrUnknownOutcome) {
				t.Fatalf("got %v, want ErrUnknownOutcome", err)
			}
			if got, err := plain.Get(ctx, key); err != nil || string(got.Value) != "other" {
				t.Fatalf("stored %q (%v), want the competitor's item", got.Value, err)
			}
		})
	}
}

// TestFaultsDeleteRecreate: each write applies on the real server and its
// answer is replaced by a timeout; in that gap (a hook in the executor, run
// after the statement and before the error returns) a competitor deletes
// the key and re-creates it so that the write's condition holds again:
// absent for PutIfAbsent, a newcomer at version 4 for the others. The
// write's own row is gone, so the call must report ErrUnknownOutcome, and
// it must not send the write again: a resend would apply a second time
// over the newcomer, or delete the newcomer's row.
func TestFaultsDeleteRecreate(t *testing.T) {
	t.Parallel()
	s, f, plain := realStores(t)
	for _, o := range realOps {
		t.Run(o.name, func(t *testing.T) {
			ctx, key := context.Background(), "recreate/"+o.name
			if err := o.setup(ctx, plain, key); err != nil {
				t.Fatal(err)
			}
			recreate := o.name != "PutIfAbsent"
			f.add(fault{
				apply: true,
				after: func() {
					if cur, err := plain.Get(ctx, key); err == nil {
						if err := plain.CompareAndDelete(ctx, key, cur.Version); err != nil {
							t.Errorf("competitor's delete: %v", err)
						}
					}
					if recreate {
						if _, _, err := plain.Upsert(ctx, key, []byte("newcomer"), 4, time.Hour); err != nil {
							t.Errorf("competitor's re-create: %v", err)
						}
					}
				},
				err: &gocql.RequestErrWriteTimeout{WriteType: "CAS"},
			})
			sent0 := f.sent.Load()
			_, applied, err := o.call(ctx, s, key)
			if !errors.Is(err, idem.ErrUnknownOutcome) {
				t.Errorf("got applied %v, err %v; want ErrUnknownOutcome", applied, err)
			}
			if sent := f.sent.Load() - sent0; sent != 1 {
				t.Errorf("conditional writes on the server: got %d, want 1 (never sent again)", sent)
			}
			checkStored(t, ctx, plain, key, idem.Item{Value: []byte("newcomer"), Version: 4}, recreate, 0)
		})
	}
}
