package idem_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

// The tests of Cache count store calls with idemtest.Counting: a replay
// served from the cache makes none.

func noCalls(t *testing.T, s *idemtest.Counting, what string) {
	t.Helper()
	if got := s.Counts(); got != (idemtest.Counts{}) {
		t.Errorf("%s made store calls %+v, want none", what, got)
	}
	s.Reset()
}

func TestCacheReplayMakesNoStoreCall(t *testing.T) {
	s := idemtest.NewCounting(memstore.New())
	c := idem.NewCache(10, 0)
	var runs atomic.Int32
	fn := func(context.Context) (string, error) { runs.Add(1); return "paid", nil }
	if _, err := idem.Do(t.Context(), s, "k", fn, idem.WithCache(c)); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	for i := range 3 {
		got, err := idem.Do(t.Context(), s, "k", fn, idem.WithCache(c))
		if err != nil || got != "paid" {
			t.Fatalf("replay %d: %q, %v", i, got, err)
		}
	}
	noCalls(t, s, "three replays of an answer this process stored")
	if runs.Load() != 1 {
		t.Errorf("fn ran %d times, want 1", runs.Load())
	}

	// An answer another process stored: the first duplicate reads it from
	// the store (one refused write), the next is served from the cache.
	fresh := idem.NewCache(10, 0)
	if _, err := idem.Do(t.Context(), s, "k", fn, idem.WithCache(fresh)); err != nil {
		t.Fatal(err)
	}
	if got := s.Counts(); got != (idemtest.Counts{PutIfAbsent: 1}) {
		t.Errorf("the first duplicate with an empty cache: %+v, want 1 PutIfAbsent", got)
	}
	s.Reset()
	if _, err := idem.Do(t.Context(), s, "k", fn, idem.WithCache(fresh)); err != nil {
		t.Fatal(err)
	}
	noCalls(t, s, "the second duplicate")
	once := func() (bool, error) {
		return idem.Once(t.Context(), s, "event-1", func(context.Context) error { return nil }, idem.WithCache(fresh))
	}
	if ran, err := once(); err != nil || !ran {
		t.Fatalf("Once: %v, %v", ran, err)
	}
	s.Reset()
	if ran, err := once(); err != nil || ran {
		t.Fatalf("Once again: %v, %v; want not run", ran, err)
	}
	noCalls(t, s, "Once on an event it handled")
}

// TestCacheExpiry: an entry is not served once its record's expiry has
// passed by the caller's clock.
func TestCacheExpiry(t *testing.T) {
	s := idemtest.NewCounting(memstore.New())
	c := idem.NewCache(10, 0)
	fn := func(context.Context) (int, error) { return 1, nil }
	if _, err := idem.Do(t.Context(), s, "k", fn, idem.WithCache(c), idem.WithRetention(time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	later := idem.WithClock(func() time.Time { return time.Now().Add(2 * time.Minute) })
	if _, err := idem.Do(t.Context(), s, "k", fn, idem.WithCache(c), later); err != nil {
		t.Fatal(err)
	}
	if got := s.Counts(); got.PutIfAbsent != 1 {
		t.Errorf("a replay after the entry expired: %+v, want it asked of the store", got)
	}
}

func TestCacheMismatchAndPermanent(t *testing.T) {
	s := idemtest.NewCounting(memstore.New())
	c := idem.NewCache(10, 0)
	fp := idem.WithFingerprint([]byte("amount=10"))
	if _, err := idem.Do(t.Context(), s, "pay", func(context.Context) (int, error) { return 10, nil }, idem.WithCache(c), fp); err != nil {
		t.Fatal(err)
	}
	declined := idem.Permanent(errors.New("card declined"))
	if _, err := idem.Do(t.Context(), s, "decline", func(context.Context) (int, error) { return 0, declined }, idem.WithCache(c)); err == nil {
		t.Fatal("want the permanent error")
	}
	s.Reset()
	_, err := idem.Do(t.Context(), s, "pay", func(context.Context) (int, error) { return 99, nil }, idem.WithCache(c),
		idem.WithFingerprint([]byte("amount=99")))
	if !errors.Is(err, idem.ErrMismatch) {
		t.Errorf("another request under a cached key: %v, want ErrMismatch", err)
	}
	_, err = idem.Do(t.Context(), s, "decline", func(context.Context) (int, error) { return 1, nil }, idem.WithCache(c))
	var pe *idem.PermanentError
	if !errors.As(err, &pe) || !pe.Replayed || pe.Err.Error() != "card declined" {
		t.Errorf("a cached permanent error: %v, want it replayed", err)
	}
	noCalls(t, s, "a mismatch and a permanent error, both cached")
}

// TestCacheHoldsOnlyAnswers: a claim in progress and a released one are
// never cached: each duplicate asks the store.
func TestCacheHoldsOnlyAnswers(t *testing.T) {
	s := idemtest.NewCounting(memstore.New())
	c := idem.NewCache(10, 0)
	lease, _, err := idem.Claim(t.Context(), s, "busy", idem.WithCache(c))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idem.Do(t.Context(), s, "failed", func(context.Context) (int, error) { return 0, errors.New("boom") }, idem.WithCache(c)); err == nil {
		t.Fatal("want fn's error")
	}
	s.Reset()
	for range 2 {
		if _, _, err := idem.Claim(t.Context(), s, "busy", idem.WithCache(c)); !errors.Is(err, idem.ErrInProgress) {
			t.Fatalf("a duplicate while in progress: %v", err)
		}
	}
	if got := s.Counts(); got.PutIfAbsent != 2 {
		t.Errorf("two duplicates of a claim in progress: %+v, want 2 PutIfAbsent", got)
	}
	if idem.CacheLen(c) != 0 {
		t.Errorf("the cache holds %d entries, want none (nothing is finished)", idem.CacheLen(c))
	}
	if err := lease.Complete(t.Context(), []byte(`"done"`)); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	_, res, err := idem.Claim(t.Context(), s, "busy", idem.WithCache(c))
	if err != nil || string(res) != `"done"` {
		t.Fatalf("after completion: %q, %v", res, err)
	}
	noCalls(t, s, "a replay of the completed claim")
	res[0] = 'X' // the caller's copy, not the cache's
	if _, res, _ := idem.Claim(t.Context(), s, "busy", idem.WithCache(c)); string(res) != `"done"` {
		t.Errorf("after the caller changed its copy: %q; the cached answer must not change", res)
	}
}

// TestCacheBounds: the least recently used answer goes once the cache is
// full, by items or by bytes; an answer over the byte bound is not held.
func TestCacheBounds(t *testing.T) {
	s := idemtest.NewCounting(memstore.New())
	c := idem.NewCache(2, 0)
	do := func(key string, opts ...idem.Option) {
		t.Helper()
		if _, err := idem.Do(t.Context(), s, key, func(context.Context) (string, error) { return key, nil }, append(opts, idem.WithCache(c))...); err != nil {
			t.Fatal(err)
		}
	}
	do("a")
	do("b")
	do("a") // a is now the most recently used
	do("c") // pushes b out
	s.Reset()
	do("a")
	do("c")
	noCalls(t, s, "replays of the two most recent answers")
	do("b")
	if got := s.Counts(); got.PutIfAbsent != 1 {
		t.Errorf("a replay of the evicted answer: %+v, want it asked of the store", got)
	}

	small := idem.NewCache(100, 64)
	big := make([]byte, 100)
	if _, err := idem.Do(t.Context(), s, "big", func(context.Context) ([]byte, error) { return big, nil }, idem.WithCache(small)); err != nil {
		t.Fatal(err)
	}
	if idem.CacheLen(small) != 0 {
		t.Errorf("an answer over the byte bound was cached")
	}
}

// TestCachePerStore: one cache shared by two stores keeps their answers
// apart.
func TestCachePerStore(t *testing.T) {
	a, b := memstore.New(), memstore.New()
	c := idem.NewCache(10, 0)
	for _, s := range []idem.Store{a, b} {
		want := fmt.Sprintf("%p", s)
		got, err := idem.Do(t.Context(), s, "k", func(context.Context) (string, error) { return want, nil }, idem.WithCache(c))
		if err != nil || got != want {
			t.Errorf("store %s: %q, %v; another store's answer leaked through the cache", want, got, err)
		}
	}
}

// TestCacheConcurrent: many callers on a few keys share one cache: every
// key runs once and every caller gets its answer (run with -race).
func TestCacheConcurrent(t *testing.T) {
	s := memstore.New()
	c := idem.NewCache(8, 0) // fewer than the keys: entries come and go
	var runs [20]atomic.Int32
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				k := (g + i) % len(runs)
				got, err := idem.Do(t.Context(), s, fmt.Sprint("k", k), func(context.Context) (int, error) {
					runs[k].Add(1)
					return k, nil
				}, idem.WithCache(c), idem.WithWait(time.Minute))
				if err != nil || got != k {
					t.Errorf("key %d: %d, %v", k, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for k := range runs {
		if n := runs[k].Load(); n != 1 {
			t.Errorf("key %d ran %d times, want 1", k, n)
		}
	}
	if idem.CacheLen(c) > 8 {
		t.Errorf("the cache holds %d entries, over its bound of 8", idem.CacheLen(c))
	}
}

func TestCacheAllocations(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under coverage and -race")
	}
	s := memstore.New()
	c := idem.NewCache(10, 0)
	fn := func(context.Context) (int, error) { return 7, nil }
	ctx := context.Background()
	if _, err := idem.Do(ctx, s, "k", fn, idem.WithCache(c)); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(100, func() { _, _ = idem.Do(ctx, s, "k", fn, idem.WithCache(c)) })
	t.Logf("a cached replay: %.0f allocations", n)
	if n > 1 { // the claim's options; an int result is decoded without encoding/json
		t.Errorf("a cached replay of an int allocates %.0f times, want at most 1 (the issue's bound is 10)", n)
	}
}

func TestNewCachePanicsOnBadBounds(t *testing.T) {
	for _, f := range []func(){
		func() { idem.NewCache(0, 0) },
		func() { idem.NewCache(1, -1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("want a panic")
				}
			}()
			f()
		}()
	}
}

// TestCacheReplaysNotShared: every caller replayed from a Cache gets a
// value of its own, so one that changes its result changes nobody else's,
// for results decoded by encoding/json (a map, a struct holding a slice)
// and by the fast path ([]byte) alike.
func TestCacheReplaysNotShared(t *testing.T) {
	type order struct{ Items []string }
	t.Run("bytes", func(t *testing.T) {
		replaysNotShared(t, []byte("abc"), func(b []byte) { b[0] = 'X' })
	})
	t.Run("map", func(t *testing.T) {
		replaysNotShared(t, map[string]int{"a": 1}, func(m map[string]int) { m["a"] = 2 })
	})
	t.Run("struct", func(t *testing.T) {
		replaysNotShared(t, order{Items: []string{"a"}}, func(o order) { o.Items[0] = "X" })
	})
}

func replaysNotShared[T any](t *testing.T, result T, change func(T)) {
	s, c := memstore.New(), idem.NewCache(10, 0)
	ctx := context.Background()
	fn := func(context.Context) (T, error) { return result, nil }
	want, _ := json.Marshal(result)
	if _, err := idem.Do(ctx, s, "k", fn, idem.WithCache(c)); err != nil {
		t.Fatal(err)
	}
	first, err := idem.Do(ctx, s, "k", fn, idem.WithCache(c))
	if err != nil {
		t.Fatal(err)
	}
	change(first)
	second, err := idem.Do(ctx, s, "k", fn, idem.WithCache(c))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(second); !bytes.Equal(got, want) {
		t.Errorf("after the first caller changed its replay, the second got %s, want %s", got, want)
	}
}
