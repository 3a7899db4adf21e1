package idemtest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

// newFaulty returns a Faulty over a Counting over memstore, so a test can
// see which calls reached the store.
func newFaulty() (*idemtest.Faulty, *idemtest.Counting) {
	c := idemtest.NewCounting(memstore.New())
	return idemtest.NewFaulty(c), c
}

func TestFaultyNoHook(t *testing.T) {
	f, c := newFaulty()
	ctx := t.Context()
	it, err := f.PutIfAbsent(ctx, "k", []byte("v"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if it, err = f.CompareAndSwap(ctx, "k", it.Version, []byte("w"), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := f.Get(ctx, "k"); err != nil || string(got.Value) != "w" || got.Version != it.Version {
		t.Fatalf("Get: got %+v, %v; want w at %d", got, err, it.Version)
	}
	up, applied, err := f.Upsert(ctx, "u", []byte("x"), 7, 0)
	if err != nil || !applied || up.Version != 7 {
		t.Fatalf("Upsert: got %+v, %v, %v", up, applied, err)
	}
	if err := f.CompareAndDelete(ctx, "u", 7); err != nil {
		t.Fatal(err)
	}
	want := idemtest.Counts{Get: 1, PutIfAbsent: 1, CompareAndSwap: 1, CompareAndDelete: 1, Upsert: 1}
	if got := c.Counts(); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestFaultyLose(t *testing.T) {
	f, c := newFaulty()
	ctx := t.Context()
	f.On("PutIfAbsent", idemtest.Lose)
	_, err := f.PutIfAbsent(ctx, "k", []byte("v"), 0)
	if !errors.Is(err, idem.ErrUnknownOutcome) {
		t.Fatalf("lost PutIfAbsent: got %v, want ErrUnknownOutcome", err)
	}
	if n := c.Counts().PutIfAbsent; n != 1 {
		t.Fatalf("lost PutIfAbsent reached the store %d times, want 1", n)
	}
	it, err := c.Get(ctx, "k")
	if err != nil || string(it.Value) != "v" {
		t.Fatalf("the lost write did not apply: %+v, %v", it, err)
	}
	// A write whose condition fails is lost just the same.
	_, err = f.PutIfAbsent(ctx, "k", []byte("again"), 0)
	if !errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, idem.ErrConflict) {
		t.Fatalf("lost refused PutIfAbsent: got %v, want ErrUnknownOutcome and no conflict", err)
	}
}

func TestFaultyFail(t *testing.T) {
	f, c := newFaulty()
	ctx := t.Context()
	boom := errors.New("boom")
	f.On("CompareAndSwap", idemtest.Fail(boom))
	it, err := f.PutIfAbsent(ctx, "k", []byte("v"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.CompareAndSwap(ctx, "k", it.Version, []byte("w"), 0); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if n := c.Counts().CompareAndSwap; n != 0 {
		t.Fatalf("a failed CompareAndSwap reached the store %d times, want 0", n)
	}
	// nil clears the hook.
	f.On("CompareAndSwap", nil)
	if _, err := f.CompareAndSwap(ctx, "k", it.Version, []byte("w"), 0); err != nil {
		t.Fatalf("after clearing the hook: %v", err)
	}
	if n := c.Counts().CompareAndSwap; n != 1 {
		t.Fatalf("got %d CompareAndSwap calls, want 1", n)
	}
}

func TestFaultyTimes(t *testing.T) {
	f, c := newFaulty()
	ctx := t.Context()
	boom := errors.New("boom")
	f.On("Get", idemtest.Times(2, idemtest.Fail(boom)))
	var got []error
	for range 4 {
		_, err := f.Get(ctx, "k")
		got = append(got, err)
	}
	if !errors.Is(got[0], boom) || !errors.Is(got[1], boom) || !errors.Is(got[2], idem.ErrNotFound) || !errors.Is(got[3], idem.ErrNotFound) {
		t.Fatalf("got %v, want boom twice, then ErrNotFound from the store", got)
	}
	if n := c.Counts().Get; n != 2 {
		t.Fatalf("got %d Gets at the store, want 2", n)
	}
}

// TestFaultyCall checks what a hook is told, that the caller gets the
// results of send and the hook's error, and that a hook may send twice.
func TestFaultyCall(t *testing.T) {
	f, c := newFaulty()
	ctx := t.Context()
	var calls []idemtest.Call
	f.On("Upsert", func(ctx context.Context, cl idemtest.Call, send func() error) error {
		calls = append(calls, cl)
		if cl.N == 2 {
			send() // a resend: the second attempt finds the first applied
		}
		return send()
	})
	f.Upsert(ctx, "a", []byte("x"), 3, 0)
	it, applied, err := f.Upsert(ctx, "b", []byte("y"), 5, time.Hour)
	if err != nil || applied || it.Version != 5 || string(it.Value) != "y" {
		t.Fatalf("resent Upsert: got %+v, %v, %v; want the last send's result: not applied, y at 5", it, applied, err)
	}
	if n := c.Counts().Upsert; n != 3 {
		t.Fatalf("got %d Upserts at the store, want 3", n)
	}
	want := []idemtest.Call{
		{Op: "Upsert", Key: "a", Value: []byte("x"), Version: 3, N: 1},
		{Op: "Upsert", Key: "b", Value: []byte("y"), Version: 5, TTL: time.Hour, N: 2},
	}
	for i := range want {
		g, w := calls[i], want[i]
		if g.Op != w.Op || g.Key != w.Key || string(g.Value) != string(w.Value) || g.Version != w.Version || g.TTL != w.TTL || g.N != w.N {
			t.Errorf("call %d: got %+v, want %+v", i, g, w)
		}
	}
	// A hook's error reaches the caller even after a send that succeeded.
	boom := errors.New("boom")
	f.On("Get", func(ctx context.Context, _ idemtest.Call, send func() error) error { send(); return boom })
	if _, err := f.Get(ctx, "a"); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
}

func TestFaultyUnknownOp(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("On of an unknown operation did not panic")
		}
	}()
	idemtest.NewFaulty(memstore.New()).On("Delete", idemtest.Lose)
}

// TestFaultyConcurrent sets hooks while calls run, for the race detector,
// and checks that N numbers every call once.
func TestFaultyConcurrent(t *testing.T) {
	f, c := newFaulty()
	ctx := t.Context()
	var mu sync.Mutex
	seen := map[int]bool{}
	record := func(ctx context.Context, cl idemtest.Call, send func() error) error {
		mu.Lock()
		seen[cl.N] = true
		mu.Unlock()
		return send()
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				f.On("Get", record)
				f.Get(ctx, "k")
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			f.On("Get", idemtest.Times(1, idemtest.Lose))
			f.On("Get", record)
		}
	})
	wg.Wait()
	if n := c.Counts().Get; n != 400 {
		t.Fatalf("got %d Gets at the store, want 400", n)
	}
	for n := range seen {
		if n < 1 || n > 400 {
			t.Fatalf("Call.N %d out of 1..400", n)
		}
	}
}

// The response of Do's completion is lost: Do settles it and the result is
// stored once.
func ExampleFaulty() {
	f := idemtest.NewFaulty(memstore.New())
	f.On("CompareAndSwap", idemtest.Times(1, idemtest.Lose))
	ctx := context.Background()
	runs := 0
	charge := func(context.Context) (int, error) { runs++; return 42, nil }
	got, err := idem.Do(ctx, f, "order-42", charge)
	fmt.Println(got, err)
	got, err = idem.Do(ctx, f, "order-42", charge)
	fmt.Println(got, err, runs)
	// Output:
	// 42 <nil>
	// 42 <nil> 1
}

func TestFaultyDrop(t *testing.T) {
	f, c := newFaulty()
	f.On("PutIfAbsent", idemtest.Drop)
	it, err := f.PutIfAbsent(t.Context(), "k", []byte("v"), 0)
	if !errors.Is(err, idem.ErrUnknownOutcome) || !isZero(it) {
		t.Fatalf("dropped PutIfAbsent: got %+v, %v; want no item and ErrUnknownOutcome", it, err)
	}
	if n := c.Counts().PutIfAbsent; n != 0 {
		t.Fatalf("a dropped PutIfAbsent reached the store %d times, want 0", n)
	}
}

// TestFaultyResend: a write that applied is sent again, and the caller
// gets the second attempt's answer, the conflict the first one caused.
func TestFaultyResend(t *testing.T) {
	f, c := newFaulty()
	f.On("PutIfAbsent", idemtest.Resend)
	_, err := f.PutIfAbsent(t.Context(), "k", []byte("v"), 0)
	var ce *idem.ConflictError
	if !errors.As(err, &ce) || !ce.Exists || string(ce.Current.Value) != "v" {
		t.Fatalf("resent PutIfAbsent: got %v, want a conflict with the first attempt's item", err)
	}
	if n := c.Counts().PutIfAbsent; n != 2 {
		t.Fatalf("got %d PutIfAbsent calls at the store, want 2", n)
	}
	// A refused first attempt is not resent.
	if _, err := f.PutIfAbsent(t.Context(), "k", []byte("w"), 0); !errors.Is(err, idem.ErrConflict) {
		t.Fatalf("got %v, want a conflict", err)
	}
	if n := c.Counts().PutIfAbsent; n != 3 {
		t.Fatalf("got %d PutIfAbsent calls at the store, want 3", n)
	}
}

// TestFaultyErrorZeroes: when the hook returns an error, the caller gets
// zero results, as from a Store, even though the store answered.
func TestFaultyErrorZeroes(t *testing.T) {
	f, _ := newFaulty()
	ctx := t.Context()
	f.On("Upsert", idemtest.Lose)
	it, applied, err := f.Upsert(ctx, "u", []byte("x"), 3, 0)
	if !errors.Is(err, idem.ErrUnknownOutcome) || applied || !isZero(it) {
		t.Fatalf("lost Upsert: got %+v, %v, %v; want zero results and ErrUnknownOutcome", it, applied, err)
	}
	f.On("Get", idemtest.Lose)
	if it, err := f.Get(ctx, "u"); err == nil || it.Key != "" {
		t.Fatalf("lost Get: got %+v, %v; want zero results and an error", it, err)
	}
}

// TestFaultyCompetitor: a competitor's write lands between the caller's
// write and its lost response, as in Lose's doc; Do's owner recognises
// its own record by its token and does not run fn twice.
func TestFaultyCompetitor(t *testing.T) {
	f, c := newFaulty()
	ctx := t.Context()
	competed := false
	f.On("PutIfAbsent", idemtest.Times(1, func(ctx context.Context, cl idemtest.Call, send func() error) error {
		return idemtest.Lose(ctx, cl, func() error {
			err := send()
			_, cerr := c.Store.Get(ctx, cl.Key) // the competitor sees the claim
			competed = cerr == nil
			return err
		})
	}))
	runs := 0
	got, err := idem.Do(ctx, f, "k", func(context.Context) (int, error) { runs++; return 7, nil })
	if err != nil || got != 7 || runs != 1 || !competed {
		t.Fatalf("got %d, %v, %d runs, competitor saw the claim %v; want 7, nil, 1 run, true", got, err, runs, competed)
	}
}

func isZero(it idem.Item) bool {
	return it.Key == "" && it.Value == nil && it.Version == 0 && it.ExpiresAt.IsZero()
}
