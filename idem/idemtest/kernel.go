package idemtest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
)

func (h *harness) kernel(t *testing.T) {
	h.each(t, "Kernel", []test{
		{"GetAbsent", testGetAbsent},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentConflict", testPutIfAbsentConflict},
		{"TTL", testTTL},
		{"CompareAndSwap", testCompareAndSwap},
		{"CompareAndDelete", testCompareAndDelete},
		{"Upsert", testUpsert},
		{"UpsertThenSwap", testUpsertThenSwap},
		{"Values", testValues},
		{"BadInput", testBadInput},
		{"Expiry", testExpiry},
		{"ConcurrentPutIfAbsent", testConcurrentPutIfAbsent},
		{"ConcurrentCompareAndSwap", testConcurrentCompareAndSwap},
		{"ConcurrentUpsert", testConcurrentUpsert},
		{"VersionsNeverRepeat", testVersionsNeverRepeat},
		{"Linearizable", testLinearizable},
	})
}

func testGetAbsent(t *testing.T, h *harness) {
	_, err := h.store.Get(ctx(t), h.key(t, "k"))
	if !errors.Is(err, idem.ErrNotFound) {
		t.Fatalf("Get of a never-written key: got error %v, want idem.ErrNotFound", err)
	}
}

func testPutIfAbsent(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	it, err := h.store.PutIfAbsent(c, key, []byte("v1"), 0)
	if err != nil {
		t.Fatalf("PutIfAbsent: %v", err)
	}
	checkFresh(t, "PutIfAbsent result", it, 0)
	want := idem.Item{Key: key, Value: []byte("v1"), Version: it.Version}
	checkItem(t, "PutIfAbsent result", it, want)
	got, err := h.store.Get(c, key)
	if err != nil {
		t.Fatalf("Get after PutIfAbsent: %v", err)
	}
	checkItem(t, "Get after PutIfAbsent", got, want)
}

func testPutIfAbsentConflict(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	first, err := h.store.PutIfAbsent(c, key, []byte("first"), time.Hour)
	if err != nil {
		t.Fatalf("PutIfAbsent: %v", err)
	}
	_, err = h.store.PutIfAbsent(c, key, []byte("second"), time.Hour)
	ce := conflict(t, err, "second PutIfAbsent")
	if !ce.Exists {
		t.Fatalf("conflict: got Exists false, want true")
	}
	if ce.Key != key {
		t.Errorf("conflict key: got %q, want %q", ce.Key, key)
	}
	checkItem(t, "conflict's current item", ce.Current, idem.Item{Key: key, Value: []byte("first"), Version: first.Version})
	checkExpiry(t, "conflict's current item", ce.Current, time.Hour)
	got, err := h.store.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	checkItem(t, "Get after refused PutIfAbsent", got, idem.Item{Key: key, Value: []byte("first"), Version: first.Version})
}

func testTTL(t *testing.T, h *harness) {
	c := ctx(t)
	it, err := h.store.PutIfAbsent(c, h.key(t, "hour"), []byte("x"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	checkExpiry(t, "PutIfAbsent with ttl 1h", it, time.Hour)
	got, err := h.store.Get(c, it.Key)
	if err != nil {
		t.Fatal(err)
	}
	checkExpiry(t, "Get after PutIfAbsent with ttl 1h", got, time.Hour)

	// CompareAndSwap sets a fresh expiry; ttl <= 0 removes it.
	sw, err := h.store.CompareAndSwap(c, it.Key, it.Version, []byte("y"), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	checkExpiry(t, "CompareAndSwap with ttl 2h", sw, 2*time.Hour)
	sw, err = h.store.CompareAndSwap(c, it.Key, it.Version+1, []byte("z"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sw.ExpiresAt.IsZero() {
		t.Errorf("CompareAndSwap with ttl 0: got ExpiresAt %v, want zero (never)", sw.ExpiresAt)
	}
	got, err = h.store.Get(c, it.Key)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.IsZero() {
		t.Errorf("Get after CompareAndSwap with ttl 0: got ExpiresAt %v, want zero", got.ExpiresAt)
	}

	up, _, err := h.store.Upsert(c, h.key(t, "upsert"), []byte("u"), 5, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	checkExpiry(t, "Upsert with ttl 30m", up, 30*time.Minute)
	neg, err := h.store.PutIfAbsent(c, h.key(t, "negative"), []byte("n"), -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !neg.ExpiresAt.IsZero() {
		t.Errorf("PutIfAbsent with negative ttl: got ExpiresAt %v, want zero (never)", neg.ExpiresAt)
	}
}

func testCompareAndSwap(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	first, err := h.store.PutIfAbsent(c, key, []byte("v1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	v := first.Version
	it, err := h.store.CompareAndSwap(c, key, v, []byte("v2"), 0)
	if err != nil {
		t.Fatalf("CompareAndSwap at the current version: %v", err)
	}
	swapped := idem.Item{Key: key, Value: []byte("v2"), Version: v + 1}
	checkItem(t, "CompareAndSwap result", it, swapped)

	_, err = h.store.CompareAndSwap(c, key, v, []byte("stale"), 0)
	ce := conflict(t, err, "CompareAndSwap at a stale version")
	if !ce.Exists {
		t.Fatal("stale CompareAndSwap: got Exists false, want true")
	}
	checkItem(t, "stale CompareAndSwap's current item", ce.Current, swapped)

	_, err = h.store.CompareAndSwap(c, key, v+2, []byte("future"), 0)
	ce = conflict(t, err, "CompareAndSwap at a future version")
	checkItem(t, "future CompareAndSwap's current item", ce.Current, swapped)

	_, err = h.store.CompareAndSwap(c, h.key(t, "absent"), 1, []byte("x"), 0)
	if ce := conflict(t, err, "CompareAndSwap on an absent key"); ce.Exists {
		t.Errorf("CompareAndSwap on an absent key: got Exists true, want false")
	}
	if _, err := h.store.Get(c, h.key(t, "absent")); !errors.Is(err, idem.ErrNotFound) {
		t.Errorf("CompareAndSwap on an absent key created it: Get got %v, want ErrNotFound", err)
	}

	got, err := h.store.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	checkItem(t, "Get after swaps", got, swapped)
}

func testCompareAndDelete(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	first, err := h.store.PutIfAbsent(c, key, []byte("v1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v := first.Version
	if _, err := h.store.CompareAndSwap(c, key, v, []byte("v2"), time.Hour); err != nil {
		t.Fatal(err)
	}
	err = h.store.CompareAndDelete(c, key, v)
	ce := conflict(t, err, "CompareAndDelete at a stale version")
	checkItem(t, "stale CompareAndDelete's current item", ce.Current, idem.Item{Key: key, Value: []byte("v2"), Version: v + 1})
	if _, err := h.store.Get(c, key); err != nil {
		t.Fatalf("stale CompareAndDelete deleted the item: Get got %v", err)
	}

	if err := h.store.CompareAndDelete(c, key, v+1); err != nil {
		t.Fatalf("CompareAndDelete at the current version: %v", err)
	}
	if _, err := h.store.Get(c, key); !errors.Is(err, idem.ErrNotFound) {
		t.Fatalf("Get after CompareAndDelete: got %v, want ErrNotFound", err)
	}
	err = h.store.CompareAndDelete(c, key, v+1)
	if ce := conflict(t, err, "CompareAndDelete of a deleted key"); ce.Exists {
		t.Errorf("CompareAndDelete of a deleted key: got Exists true, want false")
	}
	// A deleted key can be created afresh, at a version above every one it
	// held before.
	it, err := h.store.PutIfAbsent(c, key, []byte("again"), 0)
	if err != nil {
		t.Fatalf("PutIfAbsent after delete: %v", err)
	}
	checkFresh(t, "PutIfAbsent after delete", it, v+1)
	checkItem(t, "PutIfAbsent after delete", it, idem.Item{Key: key, Value: []byte("again"), Version: it.Version})
}

func testUpsert(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	steps := []struct {
		name        string
		value       string
		version     int64
		wantApplied bool
		want        idem.Item // the item returned and stored after the step
	}{
		{"absent applies", "v5", 5, true, idem.Item{Value: []byte("v5"), Version: 5}},
		{"equal version ignored", "again5", 5, false, idem.Item{Value: []byte("v5"), Version: 5}},
		{"lower version ignored", "v3", 3, false, idem.Item{Value: []byte("v5"), Version: 5}},
		{"higher version applies", "v9", 9, true, idem.Item{Value: []byte("v9"), Version: 9}},
		{"replay of an old delivery ignored", "v5", 5, false, idem.Item{Value: []byte("v9"), Version: 9}},
	}
	for _, st := range steps {
		it, applied, err := h.store.Upsert(c, key, []byte(st.value), st.version, 0)
		if err != nil {
			t.Fatalf("%s: Upsert: %v", st.name, err)
		}
		if applied != st.wantApplied {
			t.Errorf("%s: got applied %v, want %v", st.name, applied, st.wantApplied)
		}
		st.want.Key = key
		checkItem(t, st.name+": Upsert result", it, st.want)
		got, err := h.store.Get(c, key)
		if err != nil {
			t.Fatal(err)
		}
		checkItem(t, st.name+": Get", got, st.want)
	}
	zero, applied, err := h.store.Upsert(c, h.key(t, "zero"), []byte("z"), 0, 0)
	if err != nil || !applied {
		t.Fatalf("Upsert at version 0 on an absent key: got applied %v, err %v; want applied", applied, err)
	}
	checkItem(t, "Upsert at version 0", zero, idem.Item{Key: h.key(t, "zero"), Value: []byte("z"), Version: 0})
}

func testUpsertThenSwap(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	if _, _, err := h.store.Upsert(c, key, []byte("u"), 7, 0); err != nil {
		t.Fatal(err)
	}
	it, err := h.store.CompareAndSwap(c, key, 7, []byte("s"), 0)
	if err != nil {
		t.Fatalf("CompareAndSwap at an upserted version: %v", err)
	}
	checkItem(t, "CompareAndSwap after Upsert", it, idem.Item{Key: key, Value: []byte("s"), Version: 8})
	_, err = h.store.PutIfAbsent(c, key, []byte("p"), 0)
	conflict(t, err, "PutIfAbsent on an upserted key")
}

func testValues(t *testing.T, h *harness) {
	c := ctx(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"every byte", all},
		{"64KiB", big},
		{"json", []byte(`{"amount":1250,"currency":"EUR"}`)},
	} {
		key := h.key(t, tc.name)
		in := append([]byte(nil), tc.value...)
		it, err := h.store.PutIfAbsent(c, key, in, 0)
		if err != nil {
			t.Fatalf("%s: PutIfAbsent: %v", tc.name, err)
		}
		for i := range in {
			in[i] ^= 0xff // the store must not keep the caller's slice
		}
		if !bytes.Equal(it.Value, tc.value) {
			t.Errorf("%s: PutIfAbsent returned a different value (%d bytes, want %d)", tc.name, len(it.Value), len(tc.value))
		}
		got, err := h.store.Get(c, key)
		if err != nil {
			t.Fatalf("%s: Get: %v", tc.name, err)
		}
		if !bytes.Equal(got.Value, tc.value) {
			t.Errorf("%s: Get returned a different value (%d bytes, want %d)", tc.name, len(got.Value), len(tc.value))
		}
		for i := range got.Value {
			got.Value[i] ^= 0xff // nor hand out its own
		}
		again, err := h.store.Get(c, key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Value, tc.value) {
			t.Errorf("%s: changing a returned value changed the stored one", tc.name)
		}
	}
}

func testBadInput(t *testing.T, h *harness) {
	c := ctx(t)
	key := h.key(t, "k")
	ops := []struct {
		name string
		key  string // checked absent afterwards unless empty
		call func() error
	}{
		{"Get empty key", "", func() error { _, err := h.store.Get(c, ""); return err }},
		{"PutIfAbsent empty key", "", func() error { _, err := h.store.PutIfAbsent(c, "", []byte("x"), 0); return err }},
		{"CompareAndSwap empty key", "", func() error { _, err := h.store.CompareAndSwap(c, "", 1, []byte("x"), 0); return err }},
		{"CompareAndDelete empty key", "", func() error { return h.store.CompareAndDelete(c, "", 1) }},
		{"Upsert empty key", "", func() error { _, _, err := h.store.Upsert(c, "", []byte("x"), 1, 0); return err }},
		{"PutIfAbsent invalid UTF-8 key", "", func() error { _, err := h.store.PutIfAbsent(c, "bad\xff", []byte("x"), 0); return err }},
		{"CompareAndSwap version 0", key, func() error { _, err := h.store.CompareAndSwap(c, key, 0, []byte("x"), 0); return err }},
		{"CompareAndSwap negative version", key, func() error { _, err := h.store.CompareAndSwap(c, key, -1, []byte("x"), 0); return err }},
		{"CompareAndDelete version 0", key, func() error { return h.store.CompareAndDelete(c, key, 0) }},
		{"CompareAndDelete negative version", key, func() error { return h.store.CompareAndDelete(c, key, -3) }},
		{"Upsert negative version", key, func() error { _, _, err := h.store.Upsert(c, key, []byte("x"), -1, 0); return err }},
	}
	for _, op := range ops {
		err := op.call()
		if !errors.Is(err, idem.ErrInvalid) {
			t.Errorf("%s: got error %v, want one matching idem.ErrInvalid", op.name, err)
		}
		if errors.Is(err, idem.ErrConflict) {
			t.Errorf("%s: bad input reported as a conflict: %v", op.name, err)
		}
	}
	if _, err := h.store.Get(c, key); !errors.Is(err, idem.ErrNotFound) {
		t.Errorf("after rejected writes: Get got %v, want ErrNotFound (nothing written)", err)
	}
}

// testExpiry writes short-lived items, waits for them to expire once, and
// checks that every operation treats them as absent.
func testExpiry(t *testing.T, h *harness) {
	c := ctx(t)
	keys, old, items := expiryFixture(t, h)
	// Only meaningful while the 1s ttl surely runs: a loaded machine may
	// already be past it.
	if time.Until(items[0].ExpiresAt) > 300*time.Millisecond {
		_, err := h.store.Get(c, keys["get"])
		// A Get that returns after the expiry may have been judged after
		// it too (a loaded server can take that long): it proves nothing.
		if err != nil && !(errors.Is(err, idem.ErrNotFound) && !time.Now().Before(items[0].ExpiresAt)) {
			t.Fatalf("Get before expiry: %v", err)
		}
	}
	sleepUntilExpired(items[:len(items)-1]...)

	if _, err := h.store.Get(c, keys["get"]); !errors.Is(err, idem.ErrNotFound) {
		t.Errorf("Get of an expired item: got %v, want ErrNotFound", err)
	}
	checkWritesAfterExpiry(t, h, keys, old)
	// The expired CompareAndSwap and CompareAndDelete must not have revived anything.
	for _, name := range []string{"cas", "cad"} {
		if _, err := h.store.Get(c, keys[name]); !errors.Is(err, idem.ErrNotFound) {
			t.Errorf("Get %s after refused writes on an expired item: got %v, want ErrNotFound", name, err)
		}
	}
	if _, err := h.store.Get(c, keys["kept"]); err != nil {
		t.Errorf("an item with a 1h ttl expired early: %v", err)
	}
}

// expiryFixture writes testExpiry's items: one per write to try after
// expiry with a 1s ttl, one swapped to a 1s ttl, an upserted one, and one
// kept for an hour. It returns their keys, each key's last version, and the
// items in the order get, put, cas, cad, upsert, swapped, kept.
func expiryFixture(t *testing.T, h *harness) (keys map[string]string, old map[string]int64, items []idem.Item) {
	c := ctx(t)
	keys, old = map[string]string{}, map[string]int64{}
	for _, name := range []string{"get", "put", "cas", "cad", "upsert", "swapped", "kept"} {
		keys[name] = h.key(t, name)
		ttl := time.Second
		if name == "kept" {
			ttl = time.Hour
		}
		it, err := h.store.PutIfAbsent(c, keys[name], []byte("old-"+name), ttl)
		if err != nil {
			t.Fatalf("PutIfAbsent %s: %v", name, err)
		}
		items = append(items, it)
		old[name] = it.Version
	}
	// An item swapped to a 1s ttl, then expired.
	if _, err := h.store.CompareAndSwap(c, keys["swapped"], old["swapped"], []byte("swapped"), time.Second); err != nil {
		t.Fatal(err)
	}
	old["swapped"]++
	if _, _, err := h.store.Upsert(c, keys["upsert"]+"/u", []byte("u9"), 9, time.Second); err != nil {
		t.Fatal(err)
	}
	return keys, old, items
}

// checkWritesAfterExpiry tries each write on the expired items of
// expiryFixture, at the versions they held before they expired: only
// expiry can make the conditional ones fail.
func checkWritesAfterExpiry(t *testing.T, h *harness, keys map[string]string, old map[string]int64) {
	c := ctx(t)
	it, err := h.store.PutIfAbsent(c, keys["put"], []byte("new"), 0)
	if err != nil {
		t.Errorf("PutIfAbsent over an expired item: %v", err)
	} else {
		checkFresh(t, "PutIfAbsent over an expired item", it, old["put"])
		checkItem(t, "PutIfAbsent over an expired item", it, idem.Item{Key: keys["put"], Value: []byte("new"), Version: it.Version})
	}
	_, err = h.store.CompareAndSwap(c, keys["cas"], old["cas"], []byte("new"), 0)
	if ce := conflict(t, err, "CompareAndSwap of an expired item"); ce.Exists {
		t.Errorf("CompareAndSwap of an expired item: got Exists true, want false")
	}
	_, err = h.store.CompareAndSwap(c, keys["swapped"], old["swapped"], []byte("new"), 0)
	if ce := conflict(t, err, "CompareAndSwap of an item expired after a swap"); ce.Exists {
		t.Errorf("CompareAndSwap of an item expired after a swap: got Exists true, want false")
	}
	err = h.store.CompareAndDelete(c, keys["cad"], old["cad"])
	if ce := conflict(t, err, "CompareAndDelete of an expired item"); ce.Exists {
		t.Errorf("CompareAndDelete of an expired item: got Exists true, want false")
	}
	up, applied, err := h.store.Upsert(c, keys["upsert"]+"/u", []byte("u2"), 2, 0)
	if err != nil || !applied {
		t.Errorf("Upsert at a lower version over an expired item: got applied %v, err %v; want applied", applied, err)
	} else {
		checkItem(t, "Upsert over an expired item", up, idem.Item{Key: keys["upsert"] + "/u", Value: []byte("u2"), Version: 2})
	}
}

// testConcurrentPutIfAbsent races goroutines on one key per round: exactly
// one wins, every loser sees the winner's value.
func testConcurrentPutIfAbsent(t *testing.T, h *harness) {
	c := ctx(t)
	for round := range h.cfg.rounds {
		key := h.key(t, fmt.Sprint(round))
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
			unknown []string
			seen    = map[string]int{}
		)
		start := make(chan struct{})
		for g := range h.cfg.contenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				me := fmt.Sprintf("g%d", g)
				_, err := h.store.PutIfAbsent(c, key, []byte(me), time.Hour)
				mu.Lock()
				defer mu.Unlock()
				var ce *idem.ConflictError
				switch {
				case err == nil:
					winners = append(winners, me)
				case errors.As(err, &ce) && ce.Exists:
					seen[string(ce.Current.Value)]++
				case errors.Is(err, idem.ErrUnknownOutcome):
					unknown = append(unknown, me)
				default:
					t.Errorf("round %d: %s: PutIfAbsent: %v", round, me, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(winners) > 1 {
			t.Fatalf("round %d: %d winners %v, want exactly one", round, len(winners), winners)
		}
		got, err := h.store.Get(c, key)
		if err != nil {
			t.Fatalf("round %d: Get: %v", round, err)
		}
		stored := string(got.Value)
		if len(winners) == 1 && stored != winners[0] {
			t.Fatalf("round %d: winner %s, but the store holds %q", round, winners[0], stored)
		}
		if len(winners) == 0 && !contains(unknown, stored) {
			t.Fatalf("round %d: nobody won, yet the store holds %q (unknown outcomes: %v)", round, stored, unknown)
		}
		for v, n := range seen {
			if v != stored {
				t.Fatalf("round %d: %d losers were shown %q, but the store holds %q", round, n, v, stored)
			}
		}
	}
}

// testConcurrentCompareAndSwap increments a counter from many goroutines
// with read-modify-CompareAndSwap loops: no increment may be lost. A write
// the store reports as of unknown outcome may or may not count, so the
// total must lie between the increments reported applied and those plus
// the unknown ones.
func testConcurrentCompareAndSwap(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "counter")
	first, err := h.store.PutIfAbsent(c, key, []byte("0"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	workers, per := min(h.cfg.contenders, 8), 10
	var wg sync.WaitGroup
	var applied, unknown atomic.Int64
	for w := range workers {
		wg.Go(func() { incrementLoop(t, h, key, w, per, &applied, &unknown) })
	}
	wg.Wait()
	got, err := h.store.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	fmt.Sscan(string(got.Value), &total)
	lo, hi := applied.Load(), applied.Load()+unknown.Load()
	if total < lo || total > hi || got.Version != first.Version+total {
		t.Fatalf("after %d applied and %d unknown increments from version %d: got value %q version %d, want a value in [%d, %d] and version %d+value",
			lo, unknown.Load(), first.Version, got.Value, got.Version, lo, hi, first.Version)
	}
	if unknown.Load() > 0 {
		t.Logf("%d increments had an unknown outcome; the total (%d) is consistent with them", unknown.Load(), total)
	}
}

// incrementLoop is worker w of testConcurrentCompareAndSwap: it makes per
// increments of key by read-modify-CompareAndSwap, counting those applied
// and those of unknown outcome.
func incrementLoop(t *testing.T, h *harness, key string, w, per int, applied, unknown *atomic.Int64) {
	c := ctx(t)
	cur, err := h.store.Get(c, key)
	if err != nil {
		t.Errorf("worker %d: Get: %v", w, err)
		return
	}
	for done := 0; done < per; {
		var n int
		fmt.Sscan(string(cur.Value), &n)
		next, err := h.store.CompareAndSwap(c, key, cur.Version, []byte(fmt.Sprint(n+1)), time.Hour)
		var ce *idem.ConflictError
		switch {
		case err == nil:
			applied.Add(1)
			cur = next
			done++
		case errors.As(err, &ce) && ce.Exists:
			cur = ce.Current // retry from the conflict's item: no extra read
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		case errors.Is(err, idem.ErrUnknownOutcome):
			unknown.Add(1)
			done++
			if cur, err = h.store.Get(c, key); err != nil {
				t.Errorf("worker %d: Get: %v", w, err)
				return
			}
		default:
			t.Errorf("worker %d: CompareAndSwap: %v", w, err)
			return
		}
	}
}

// testConcurrentUpsert delivers versions 1..n in random order from many
// goroutines, each twice: the highest version wins.
func testConcurrentUpsert(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	n := h.cfg.contenders
	versions := make([]int64, 0, 2*n)
	for v := 1; v <= n; v++ {
		versions = append(versions, int64(v), int64(v))
	}
	rand.Shuffle(len(versions), func(i, j int) { versions[i], versions[j] = versions[j], versions[i] })
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied := map[int64]int{}
	unknown := map[int64]bool{}
	for _, v := range versions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := h.store.Upsert(c, key, []byte(fmt.Sprint(v)), v, time.Hour)
			if errors.Is(err, idem.ErrUnknownOutcome) {
				mu.Lock()
				unknown[v] = true
				mu.Unlock()
				return
			}
			if err != nil {
				t.Errorf("Upsert %d: %v", v, err)
				return
			}
			if ok {
				mu.Lock()
				applied[v]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for v, k := range applied {
		if k > 1 {
			t.Errorf("version %d applied %d times, want at most once", v, k)
		}
	}
	got, err := h.store.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	if applied[int64(n)] == 0 && unknown[int64(n)] {
		// The highest version's outcome is unknown: the item must hold a
		// version that some delivery wrote, and be consistent.
		if string(got.Value) != fmt.Sprint(got.Version) || got.Version < 1 || got.Version > int64(n) {
			t.Fatalf("after concurrent Upserts: got value %q version %d", got.Value, got.Version)
		}
		return
	}
	checkItem(t, "after concurrent Upserts", got, idem.Item{Key: key, Value: []byte(fmt.Sprint(n)), Version: int64(n)})
}

// testVersionsNeverRepeat takes one key through three incarnations: created,
// swapped, deleted; created again, swapped, expired; created a third time.
// No version may come back, each incarnation must start above the last
// version of the one before, and no version of an earlier incarnation may
// act on the last one.
func testVersionsNeverRepeat(t *testing.T, h *harness) {
	c, key := ctx(t), h.key(t, "k")
	var all []int64 // every version the key held, in order
	create := func(what string, ttl time.Duration) idem.Item {
		t.Helper()
		it, err := h.store.PutIfAbsent(c, key, []byte(what), ttl)
		if err != nil {
			t.Fatalf("%s: PutIfAbsent: %v", what, err)
		}
		var last int64
		if len(all) > 0 {
			last = all[len(all)-1]
		}
		checkFresh(t, what, it, last)
		all = append(all, it.Version)
		return it
	}
	swap := func(what string, it idem.Item, ttl time.Duration) idem.Item {
		t.Helper()
		next, err := h.store.CompareAndSwap(c, key, it.Version, []byte(what), ttl)
		if err != nil {
			t.Fatalf("%s: CompareAndSwap at %d: %v", what, it.Version, err)
		}
		if next.Version != it.Version+1 {
			t.Fatalf("%s: CompareAndSwap at %d: got version %d, want %d", what, it.Version, next.Version, it.Version+1)
		}
		all = append(all, next.Version)
		return next
	}

	it := create("first", 0)
	for i := range 3 {
		it = swap(fmt.Sprintf("first, swap %d", i+1), it, 0)
	}
	if err := h.store.CompareAndDelete(c, key, it.Version); err != nil {
		t.Fatalf("CompareAndDelete at %d: %v", it.Version, err)
	}

	it = create("second, after delete", 0)
	it = swap("second, swap 1", it, 0)
	it = swap("second, swap 2 with a 1s ttl", it, time.Second)
	sleepUntilExpired(it)

	it = create("third, after expiry", 0)
	checkFenced(t, h, key, all, it)
}

// checkFenced checks that the versions all, the key's whole history ending
// at the live item last, never repeat, and that none but the last acts on
// the key.
func checkFenced(t *testing.T, h *harness, key string, all []int64, last idem.Item) {
	c := ctx(t)
	seen := map[int64]bool{}
	for _, v := range all {
		if seen[v] {
			t.Errorf("version %d came back: the key's versions were %v", v, all)
		}
		seen[v] = true
	}
	// A caller holding any earlier version is fenced off the third incarnation.
	for _, v := range all[:len(all)-1] {
		if _, err := h.store.CompareAndSwap(c, key, v, []byte("stale"), 0); !errors.Is(err, idem.ErrConflict) {
			t.Errorf("CompareAndSwap at the old version %d on a later incarnation: got %v, want a conflict", v, err)
		}
		if err := h.store.CompareAndDelete(c, key, v); !errors.Is(err, idem.ErrConflict) {
			t.Errorf("CompareAndDelete at the old version %d on a later incarnation: got %v, want a conflict", v, err)
		}
	}
	got, err := h.store.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	checkItem(t, "Get of the third incarnation", got, last)
}

// testLinearizable runs Linearizable without faults, sized to stay within a
// few seconds on a real server.
func testLinearizable(t *testing.T, h *harness) {
	Linearizable(t, h.store, LinearConfig{Clients: 4, Keys: 2, Ops: 20, Rounds: 2})
}

// checkFresh checks that it has a version PutIfAbsent may give: at least 1
// and above above, the last version the key held before (0: none).
func checkFresh(t *testing.T, what string, it idem.Item, above int64) {
	t.Helper()
	if it.Version < 1 || it.Version <= above {
		t.Errorf("%s: got version %d, want a fresh version: at least 1 and above %d, the key's last version before", what, it.Version, above)
	}
}

func checkItem(t *testing.T, what string, got, want idem.Item) {
	t.Helper()
	if got.Key != want.Key || got.Version != want.Version || !bytes.Equal(got.Value, want.Value) {
		t.Errorf("%s: got {Key %q Value %q Version %d}, want {Key %q Value %q Version %d}",
			what, got.Key, trim(got.Value), got.Version, want.Key, trim(want.Value), want.Version)
	}
}

// checkExpiry checks that it expires ttl from now, within the rounding a
// whole-second store may apply.
func checkExpiry(t *testing.T, what string, it idem.Item, ttl time.Duration) {
	t.Helper()
	want := time.Now().Add(ttl)
	if it.ExpiresAt.Before(want.Add(-10*time.Second)) || it.ExpiresAt.After(want.Add(2*time.Second)) {
		t.Errorf("%s: got ExpiresAt %v, want about %v", what, it.ExpiresAt, want)
	}
}

func trim(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
