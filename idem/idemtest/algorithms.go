package idemtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
)

func (h *harness) algorithms(t *testing.T) {
	h.each(t, "Algorithms", []test{
		{"DoOnce", testDoOnce},
		{"DoRoundTrips", testDoRoundTrips},
		{"DoMismatch", testDoMismatch},
		{"DoInProgress", testDoInProgress},
		{"DoWait", testDoWait},
		{"DoErrorReleases", testDoErrorReleases},
		{"DoPermanentError", testDoPermanentError},
		{"DoConcurrent", testDoConcurrent},
		{"ClaimTakeover", testClaimTakeover},
		{"ClaimFencing", testClaimFencing},
		{"ClaimExpiry", testClaimExpiry},
		{"FenceAfterRelease", func(t *testing.T, h *harness) { testFenceAcross(t, h, "release") }},
		{"FenceAfterDelete", func(t *testing.T, h *harness) { testFenceAcross(t, h, "delete") }},
		{"FenceAfterExpiry", func(t *testing.T, h *harness) { testFenceAcross(t, h, "expiry") }},
		{"InProgressOutlivesRetention", testInProgressOutlivesRetention},
		{"Update", testUpdate},
		{"Once", testOnce},
		{"Add", testAdd},
	})
}

type payment struct {
	ID     string `json:"id"`
	Amount int    `json:"amount"`
}

func testDoOnce(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	var runs atomic.Int32
	charge := func(context.Context) (payment, error) {
		runs.Add(1)
		return payment{ID: "pay_1", Amount: 1250}, nil
	}
	for i := range 3 {
		got, err := idem.Do(c, h.store, key, charge)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got != (payment{ID: "pay_1", Amount: 1250}) {
			t.Errorf("call %d: got %+v, want pay_1/1250", i, got)
		}
		if n := runs.Load(); n != 1 {
			t.Errorf("call %d: fn has run %d times, want 1 (every later call is a replay)", i, n)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("fn ran %d times for one key, want 1", n)
	}
}

// testDoRoundTrips counts store calls: a first Do is 2 writes, a duplicate
// 1 write, and neither reads.
func testDoRoundTrips(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	s := NewCounting(h.store)
	fn := func(context.Context) (int, error) { return 7, nil }
	if _, err := idem.Do(c, s, key, fn); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Counts(), (Counts{PutIfAbsent: 1, CompareAndSwap: 1}); got != want {
		t.Errorf("first Do: got %+v, want %+v", got, want)
	}
	s.Reset()
	if _, err := idem.Do(c, s, key, fn); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Counts(), (Counts{PutIfAbsent: 1}); got != want {
		t.Errorf("duplicate Do: got %+v, want %+v", got, want)
	}
}

func testDoMismatch(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	fp1, _ := idem.Fingerprint(map[string]any{"amount": 100, "currency": "EUR"})
	fp2, _ := idem.Fingerprint(map[string]any{"amount": 999, "currency": "EUR"})
	fn := func(context.Context) (string, error) { return "charged 100", nil }
	if _, err := idem.Do(c, h.store, key, fn, idem.WithFingerprint(fp1)); err != nil {
		t.Fatal(err)
	}
	ran := false
	_, err := idem.Do(c, h.store, key, func(context.Context) (string, error) { ran = true; return "charged 999", nil }, idem.WithFingerprint(fp2))
	if !errors.Is(err, idem.ErrMismatch) {
		t.Fatalf("same key, different request: got %v, want ErrMismatch", err)
	}
	if ran {
		t.Fatal("fn ran for a mismatched request")
	}
	got, err := idem.Do(c, h.store, key, fn, idem.WithFingerprint(fp1))
	if err != nil || got != "charged 100" {
		t.Fatalf("same request again: got %q, %v; want the stored result", got, err)
	}
}

func testDoInProgress(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := idem.Do(c, h.store, key, func(context.Context) (int, error) {
			close(started)
			<-release
			return 1, nil
		})
		done <- err
	}()
	<-started
	_, err := idem.Do(c, h.store, key, func(context.Context) (int, error) { return 2, nil })
	var ip *idem.InProgressError
	if !errors.As(err, &ip) || !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("duplicate while running: got %v, want *InProgressError", err)
	}
	if ip.LeaseUntil.Before(time.Now()) {
		t.Errorf("InProgressError.LeaseUntil %v is in the past", ip.LeaseUntil)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func testDoWait(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	started := make(chan struct{})
	go func() {
		idem.Do(c, h.store, key, func(context.Context) (string, error) {
			close(started)
			time.Sleep(300 * time.Millisecond)
			return "first", nil
		})
	}()
	<-started
	ran := false
	got, err := idem.Do(c, h.store, key, func(context.Context) (string, error) { ran = true; return "second", nil },
		idem.WithWait(20*time.Second))
	if err != nil || got != "first" || ran {
		t.Fatalf("waiting duplicate: got %q, ran %v, %v; want the first result, replayed", got, ran, err)
	}
}

func testDoErrorReleases(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	boom := errors.New("card network down")
	_, err := idem.Do(c, h.store, key, func(context.Context) (int, error) { return 0, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want fn's error", err)
	}
	// The claim is released, not deleted: a tombstone keeps the key's
	// versions rising for the next claim.
	it, err := h.store.Get(c, key)
	if err != nil {
		t.Fatalf("after a failed fn: Get got %v, want the released record", err)
	}
	if st := recordStatus(it.Value); st != "released" {
		t.Fatalf("after a failed fn: got a record with status %q (%s); want a released record", st, it.Value)
	}
	got, err := idem.Do(c, h.store, key, func(context.Context) (int, error) { return 42, nil })
	if err != nil || got != 42 {
		t.Fatalf("retry after a failure: got %d, %v; want 42 (fn runs again)", got, err)
	}
}

func testDoPermanentError(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	var runs atomic.Int32
	fn := func(context.Context) (int, error) {
		runs.Add(1)
		return 0, &idem.PermanentError{Code: "card_declined", Err: errors.New("insufficient funds")}
	}
	for i := range 2 {
		_, err := idem.Do(c, h.store, key, fn)
		var perm *idem.PermanentError
		if !errors.As(err, &perm) {
			t.Fatalf("call %d: got %v, want *PermanentError", i, err)
		}
		if perm.Code != "card_declined" || perm.Err.Error() != "insufficient funds" || perm.Replayed != (i > 0) {
			t.Errorf("call %d: got code %q message %q replayed %v", i, perm.Code, perm.Err, perm.Replayed)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("fn ran %d times, want 1 (the permanent error is the answer)", n)
	}
}

// testDoConcurrent fires duplicates of several keys at once, with waiting:
// each key's fn runs exactly once and every caller gets its result.
func testDoConcurrent(t *testing.T, h *harness) {
	c := ctx(t)
	const keys, dup = 4, 8
	var runs [keys]atomic.Int32
	var wg sync.WaitGroup
	for k := range keys {
		for range dup {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := idem.Do(c, h.store, h.key(t, fmt.Sprint(k)), func(context.Context) (int, error) {
					runs[k].Add(1)
					time.Sleep(20 * time.Millisecond)
					return k * 10, nil
				}, idem.WithWait(30*time.Second))
				if err != nil || got != k*10 {
					t.Errorf("key %d: got %d, %v; want %d", k, got, err, k*10)
				}
			}()
		}
	}
	wg.Wait()
	for k := range keys {
		if n := runs[k].Load(); n != 1 {
			t.Errorf("key %d: fn ran %d times, want 1", k, n)
		}
	}
}

// testClaimTakeover: an owner that stops heartbeating loses its key once
// its lease passes. Time is moved with WithClock; the store's clock is real.
func testClaimTakeover(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	t0 := time.Now()
	dead, rec, err := idem.Claim(c, h.store, key, idem.WithLease(10*time.Second))
	if err != nil || rec != nil {
		t.Fatalf("first claim: got record %v, %v", rec, err)
	}
	_, _, err = idem.Claim(c, h.store, key, idem.WithClock(func() time.Time { return t0.Add(5 * time.Second) }))
	if !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("claim under a live lease: got %v, want ErrInProgress", err)
	}
	later := func() time.Time { return t0.Add(11 * time.Second) }
	heir, rec, err := idem.Claim(c, h.store, key, idem.WithClock(later))
	if err != nil || heir == nil {
		t.Fatalf("claim after the lease passed: got record %v, %v; want a takeover", rec, err)
	}
	if heir.Attempt() != 2 {
		t.Errorf("takeover: got Attempt %d, want 2 (a takeover)", heir.Attempt())
	}
	if err := dead.Extend(c, time.Minute); !errors.Is(err, idem.ErrLeaseLost) {
		t.Errorf("the dead owner extended after the takeover: got %v, want ErrLeaseLost", err)
	}
	if err := heir.Complete(c, []byte(`"heir"`)); err != nil {
		t.Fatal(err)
	}
}

// testClaimFencing: a stale owner whose lease was taken over can neither
// complete, extend nor release the new owner's claim.
func testClaimFencing(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	t0 := time.Now()
	stale, _, err := idem.Claim(c, h.store, key, idem.WithLease(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	heir, _, err := idem.Claim(c, h.store, key, idem.WithClock(func() time.Time { return t0.Add(2 * time.Second) }))
	if err != nil || heir == nil {
		t.Fatalf("takeover: %v", err)
	}
	for name, call := range map[string]func() error{
		"Complete":      func() error { return stale.Complete(c, []byte(`"stale"`)) },
		"CompleteError": func() error { return stale.CompleteError(c, "x", "stale") },
		"Extend":        func() error { return stale.Extend(c, time.Hour) },
		"Release":       func() error { return stale.Release(c) },
	} {
		if err := call(); !errors.Is(err, idem.ErrLeaseLost) {
			t.Errorf("stale %s: got %v, want ErrLeaseLost", name, err)
		}
	}
	if err := heir.Complete(c, []byte(`"heir"`)); err != nil {
		t.Fatalf("the new owner could not complete after the stale one tried: %v", err)
	}
	_, rec, err := idem.Claim(c, h.store, key)
	if err != nil || rec == nil || string(rec) != `"heir"` {
		t.Fatalf("after fencing: got record %+v, %v; want the heir's result", rec, err)
	}
}

// testFenceAcross: a stale owner can never act on a later incarnation of
// its key. A stalls past its lease; B takes over, and then the key starts
// again: B releases it (between == "release"), or its record is deleted by
// hand ("delete"), or B releases it and the released record expires
// ("expiry"); C claims the key afresh. A's every write must fail with
// ErrLeaseLost and change nothing: a fourth caller finds C's claim in
// progress, and C completes it. Leases are moved with WithClock; expiry
// waits on the store's real clock.
func testFenceAcross(t *testing.T, h *harness, between string) {
	c, key := ctx(t), h.key(t, "k")
	t0 := time.Now()
	at := func(d time.Duration) idem.Option { return idem.WithClock(func() time.Time { return t0.Add(d) }) }
	ttl := idem.WithRetention(time.Hour)
	if between == "expiry" {
		ttl = idem.WithRetention(time.Second)
	}
	a, _, err := idem.Claim(c, h.store, key, idem.WithLease(time.Second), ttl)
	if err != nil {
		t.Fatal(err)
	}
	fenceA := a.Fence()
	if err := a.Extend(c, time.Second); err != nil {
		t.Fatalf("A's extension: %v", err)
	}
	if a.Fence() != fenceA {
		t.Errorf("A's fence moved from %d to %d with an extension; it must stay the claim's", fenceA, a.Fence())
	}
	b, _, err := idem.Claim(c, h.store, key, at(2*time.Second), idem.WithLease(time.Second), ttl)
	if err != nil || b == nil || b.Attempt() == 1 {
		t.Fatalf("B's takeover: %v, %v", b, err)
	}
	if b.Fence() <= a.Fence() {
		t.Errorf("B took over with fence %d, not above stale A's %d", b.Fence(), a.Fence())
	}
	endIncarnation(t, h, key, b, between)
	later := at(3*time.Second + time.Since(t0))
	cl, _, err := idem.Claim(c, h.store, key, later, ttl)
	if err != nil || cl == nil {
		t.Fatalf("C's claim: %v, %v", cl, err)
	}
	if cl.Fence() <= b.Fence() {
		t.Errorf("C claimed after %s with fence %d, not above B's %d (and A's %d)", between, cl.Fence(), b.Fence(), a.Fence())
	}
	staleWritesRefused(t, a, "after "+between+" and a new claim")
	if _, _, err := idem.Claim(c, h.store, key, later, ttl); !errors.Is(err, idem.ErrInProgress) {
		t.Fatalf("a fourth caller while C runs: got %v, want ErrInProgress", err)
	}
	if err := cl.Complete(c, []byte(`"c"`)); err != nil {
		t.Fatalf("C's completion after the stale writes: %v", err)
	}
}

// endIncarnation ends the record b holds: b releases it ("release",
// "expiry", which then waits for the record to expire) or it is deleted
// ("delete").
func endIncarnation(t *testing.T, h *harness, key string, b *idem.Lease, between string) {
	t.Helper()
	c := ctx(t)
	switch between {
	case "release", "expiry":
		if err := b.Release(c); err != nil {
			t.Fatalf("B's release: %v", err)
		}
	case "delete":
		it, err := h.store.Get(c, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.store.CompareAndDelete(c, key, it.Version); err != nil {
			t.Fatalf("deleting B's record: %v", err)
		}
	}
	if between == "expiry" {
		it, err := h.store.Get(c, key)
		if err != nil {
			t.Fatal(err)
		}
		sleepUntilExpired(it)
	}
}

// staleWritesRefused checks that every write of the stale lease a is
// refused with ErrLeaseLost; when says when, for errors.
func staleWritesRefused(t *testing.T, a *idem.Lease, when string) {
	t.Helper()
	c := ctx(t)
	for name, call := range map[string]func() error{
		"Complete":      func() error { return a.Complete(c, []byte(`"stale"`)) },
		"CompleteError": func() error { return a.CompleteError(c, "x", "stale") },
		"Extend":        func() error { return a.Extend(c, time.Hour) },
		"Release":       func() error { return a.Release(c) },
	} {
		if err := call(); !errors.Is(err, idem.ErrLeaseLost) {
			t.Errorf("stale A's %s %s: got %v, want ErrLeaseLost", name, when, err)
		}
	}
}

// testInProgressOutlivesRetention: an in-progress record is kept at least
// until its lease passes, whatever the retention, so a duplicate never
// finds it gone while its owner may still run.
func testInProgressOutlivesRetention(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	lease, _, err := idem.Claim(c, h.store, key, idem.WithRetention(time.Second), idem.WithLease(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	it, err := h.store.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	if it.ExpiresAt.Before(lease.Until()) {
		t.Fatalf("the in-progress record expires at %v, before its lease passes at %v", it.ExpiresAt, lease.Until())
	}
	if err := lease.Extend(c, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if it, err = h.store.Get(c, key); err != nil {
		t.Fatal(err)
	}
	if it.ExpiresAt.Before(lease.Until()) {
		t.Fatalf("after Extend the record expires at %v, before its lease passes at %v", it.ExpiresAt, lease.Until())
	}
	if err := lease.Release(c); err != nil {
		t.Fatal(err)
	}
}

// testClaimExpiry: a completed key is kept for its TTL, then runs again.
func testClaimExpiry(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	var runs atomic.Int32
	fn := func(context.Context) (int32, error) { return runs.Add(1), nil }
	if _, err := idem.Do(c, h.store, key, fn, idem.WithRetention(time.Second)); err != nil {
		t.Fatal(err)
	}
	it, err := h.store.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	sleepUntilExpired(it)
	got, err := idem.Do(c, h.store, key, fn, idem.WithRetention(time.Second))
	if err != nil || got != 2 {
		t.Fatalf("Do after the retention passed: got %d, %v; want 2 (fn runs again)", got, err)
	}
}

func testUpdate(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	const workers, per = 4, 5
	var wg sync.WaitGroup
	var applied, unknown atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				_, err := idem.Update(c, h.store, key, func(v []byte, exists bool) ([]byte, error) {
					n := 0
					if exists {
						fmt.Sscan(string(v), &n)
					}
					return []byte(fmt.Sprint(n + 1)), nil
				}, idem.WithAttempts(100))
				switch {
				case err == nil:
					applied.Add(1)
				case errors.Is(err, idem.ErrUnknownOutcome):
					unknown.Add(1) // may or may not count; see below
				default:
					t.Errorf("Update: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	it, err := h.store.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	fmt.Sscan(string(it.Value), &total)
	if total < applied.Load() || total > applied.Load()+unknown.Load() {
		t.Fatalf("after %d applied and %d unknown concurrent updates: got %q", applied.Load(), unknown.Load(), it.Value)
	}
	skipped, err := idem.Update(c, h.store, key, func([]byte, bool) ([]byte, error) { return nil, idem.ErrSkipUpdate })
	if err != nil || skipped.Version != it.Version {
		t.Fatalf("ErrSkipUpdate: got version %d, %v; want %d unchanged", skipped.Version, err, it.Version)
	}
}

func testOnce(t *testing.T, h *harness) {
	c := ctx(t)
	var handled atomic.Int32
	handle := func(context.Context) error { handled.Add(1); return nil }
	for i, id := range []string{"evt-1", "evt-2", "evt-1", "evt-1", "evt-2"} {
		ran, err := idem.Once(c, h.store, h.key(t, id), handle)
		if err != nil {
			t.Fatalf("delivery %d of %s: %v", i, id, err)
		}
		if want := i < 2; ran != want {
			t.Errorf("delivery %d of %s: got ran %v, want %v", i, id, ran, want)
		}
	}
	if n := handled.Load(); n != 2 {
		t.Fatalf("handled %d times for 2 distinct events, want 2", n)
	}
}

// testAdd adds concurrently with every operation delivered twice: the total
// counts each operation once.
func testAdd(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "balance")
	const ops = 12
	var wg sync.WaitGroup
	var applied atomic.Int32
	counter := idem.Counter{Store: h.store, Key: key, Attempts: 100}
	for i := range 2 * ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := counter.Add(c, fmt.Sprintf("op-%d", i%ops), 5)
			if err != nil {
				t.Errorf("Add op-%d: %v", i%ops, err)
			}
			if ok {
				applied.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := applied.Load(); n != ops {
		t.Errorf("applied %d times, want %d", n, ops)
	}
	total, err := counter.Value(c)
	if err != nil || total != 5*ops {
		t.Fatalf("total: got %d, %v; want %d", total, err, 5*ops)
	}
}

// recordStatus is the status of a claim record, read as a person at a
// database console would (idem/internal/recordfmt has the layout): the binary
// format has it in its second byte ('i', 'c' or 'r'); the first format is
// JSON with a "status" field.
func recordStatus(value []byte) string {
	if len(value) >= 2 && value[0] == 0x01 {
		return map[byte]string{'i': "in_progress", 'c': "completed", 'r': "released"}[value[1]]
	}
	var r struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(value, &r) != nil {
		return ""
	}
	return r.Status
}
