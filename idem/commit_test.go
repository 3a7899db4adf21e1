package idem_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

// The tests of WithCommit stand in for a backend that commits other writes
// with the completion (dynamo.DoTx): a Commit that delegates to the
// store's CompareAndSwap, and fails, loses or refuses as told.

// TestCommitWroteNothingReleases: a Commit that fails with an error that
// says nothing was written (a cancelled transaction) gets the key
// released, so a retry runs fn again; the error reaches the caller.
func TestCommitWroteNothingReleases(t *testing.T) {
	s := memstore.New()
	refused := errors.New("transaction cancelled: a condition of the caller's own write failed")
	var runs atomic.Int32
	fn := func(context.Context) (int, error) { return int(runs.Add(1)), nil }
	commit := func(context.Context, string, int64, []byte, time.Duration) (idem.Item, error) {
		return idem.Item{}, refused
	}
	if _, err := idem.Do(t.Context(), s, "k", fn, idem.WithCommit(commit)); !errors.Is(err, refused) {
		t.Fatalf("got %v, want the commit's error", err)
	}
	got, err := idem.Do(t.Context(), s, "k", fn)
	if err != nil || got != 2 {
		t.Fatalf("the retry: %d, %v; want fn run again (2)", got, err)
	}
}

// TestCommitLostResponseSettles: the commit applies, its response is lost
// (unknown outcome); the lease sends it again, the copy is refused on the
// version with our own record as the current item, and Do succeeds with the
// commit applied once.
func TestCommitLostResponseSettles(t *testing.T) {
	s := memstore.New()
	var calls, applied atomic.Int32
	commit := func(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
		calls.Add(1)
		it, err := s.CompareAndSwap(ctx, key, version, value, ttl)
		if err == nil {
			applied.Add(1)
		}
		if calls.Load() == 1 {
			return idem.Item{}, idem.ErrUnknownOutcome
		}
		return it, err
	}
	got, err := idem.Do(t.Context(), s, "k", func(context.Context) (string, error) { return "paid", nil }, idem.WithCommit(commit))
	if err != nil || got != "paid" {
		t.Fatalf("got %q, %v", got, err)
	}
	if calls.Load() != 2 || applied.Load() != 1 {
		t.Errorf("commit called %d times, applied %d; want 2 calls, 1 applied", calls.Load(), applied.Load())
	}
	if got, err := idem.Do(t.Context(), s, "k", func(context.Context) (string, error) { return "again", nil }); err != nil || got != "paid" {
		t.Errorf("a duplicate: %q, %v", got, err)
	}
}

// TestCommitStaleWorkerRefused: the owner's lease passed and another caller
// took the key over and completed it while fn ran; the stale owner's commit
// is refused on the version: ErrLeaseLost, nothing released, the new
// owner's answer stands.
func TestCommitStaleWorkerRefused(t *testing.T) {
	s := memstore.New()
	commit := func(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
		return s.CompareAndSwap(ctx, key, version, value, ttl)
	}
	ahead := idem.WithClock(func() time.Time { return time.Now().Add(time.Minute) })
	got, err := idem.Do(t.Context(), s, "k", func(ctx context.Context) (string, error) {
		if v, err := idem.Do(ctx, s, "k", func(context.Context) (string, error) { return "B", nil }, ahead); err != nil || v != "B" {
			t.Fatalf("B's takeover: %q, %v", v, err)
		}
		return "A", nil
	}, idem.WithLease(time.Second), idem.WithoutHeartbeat(), idem.WithCommit(commit))
	if !errors.Is(err, idem.ErrLeaseLost) || got != "A" {
		t.Fatalf("stale A: %q, %v; want its result with ErrLeaseLost", got, err)
	}
	if v, err := idem.Do(t.Context(), s, "k", func(context.Context) (string, error) { return "C", nil }, ahead); err != nil || v != "B" {
		t.Errorf("a duplicate: %q, %v; want B's answer", v, err)
	}
}

// TestLeaseWriteFailingAfterLostCopy: a completion's response is lost (it
// applied), and the copy sent again fails outright. The failure says
// nothing of the first copy: the outcome is unknown, not a plain failure.
func TestLeaseWriteFailingAfterLostCopy(t *testing.T) {
	s := idemtest.NewFaulty(memstore.New())
	down := errors.New("store unreachable")
	s.On("CompareAndSwap", func(ctx context.Context, c idemtest.Call, send func() error) error {
		if c.N == 1 {
			return idemtest.Lose(ctx, c, send)
		}
		return idemtest.Fail(down)(ctx, c, send)
	})
	lease, _, err := idem.Claim(t.Context(), s, "k")
	if err != nil {
		t.Fatal(err)
	}
	err = lease.Complete(t.Context(), []byte(`"done"`))
	if !errors.Is(err, idem.ErrUnknownOutcome) || !errors.Is(err, down) {
		t.Fatalf("got %v, want ErrUnknownOutcome wrapping the second copy's failure", err)
	}
}

// TestFenceRisesFromRunToRun: the fence fn sees through LeaseFrom rises
// from execution to execution of a key: after a failure (released), and
// after a takeover of a crashed owner.
func TestFenceRisesFromRunToRun(t *testing.T) {
	s := memstore.New()
	var fences []int64
	record := func(ctx context.Context) {
		l, ok := idem.LeaseFrom(ctx)
		if !ok {
			t.Fatal("no lease in fn's context")
		}
		fences = append(fences, l.Fence())
	}
	_, err := idem.Do(t.Context(), s, "k", func(ctx context.Context) (int, error) {
		record(ctx)
		return 0, errors.New("failed: released")
	})
	if err == nil {
		t.Fatal("want fn's error")
	}
	lease, _, err := idem.Claim(t.Context(), s, "k", idem.WithLease(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	fences = append(fences, lease.Fence()) // a claim left behind, as by a crash
	ahead := idem.WithClock(func() time.Time { return time.Now().Add(time.Minute) })
	if _, err := idem.Do(t.Context(), s, "k", func(ctx context.Context) (int, error) { record(ctx); return 1, nil }, ahead); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(fences); i++ {
		if fences[i] <= fences[i-1] {
			t.Errorf("fences %v: execution %d's is not above the one before", fences, i+1)
		}
	}
	if len(fences) != 3 {
		t.Errorf("fences %v: want 3", fences)
	}
}
