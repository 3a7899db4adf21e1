package idem_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

func ok(ctx context.Context) (string, error) { return "ok", nil }

// TestLostResponses provokes a lost response on each write of Do's path, at
// the Store boundary, in both forms a caller can see: the store reports an
// unknown outcome after applying the write, or the driver resends the write
// and its retry fails on the first attempt's effect. fn must run once and Do
// must succeed.
func TestLostResponses(t *testing.T) {
	for _, tc := range []struct {
		op, kind string
		hook     idemtest.Hook
	}{
		{"PutIfAbsent", "lost", idemtest.Lose},
		{"PutIfAbsent", "resend", idemtest.Resend},
		{"CompareAndSwap", "resend", idemtest.Resend},
	} {
		t.Run(tc.op+"/"+tc.kind, func(t *testing.T) {
			s := idemtest.NewFaulty(memstore.New())
			s.On(tc.op, idemtest.Times(1, tc.hook)) // the first call of tc.op only
			var runs atomic.Int32
			fn := func(context.Context) (string, error) { runs.Add(1); return "charged", nil }
			got, err := idem.Do(context.Background(), s, "pay/1", fn)
			if err != nil || got != "charged" {
				t.Fatalf("Do: got %q, %v; want charged", got, err)
			}
			got, err = idem.Do(context.Background(), s, "pay/1", fn)
			if err != nil || got != "charged" {
				t.Fatalf("duplicate Do: got %q, %v", got, err)
			}
			if n := runs.Load(); n != 1 {
				t.Fatalf("fn ran %d times, want 1", n)
			}
		})
	}
}

// TestLostCompletionSettled: a completion that applied but whose outcome
// the store could not tell is settled by the lease: its retry finds its own
// record, so Do succeeds and a duplicate replays the result.
func TestLostCompletionSettled(t *testing.T) {
	s := idemtest.NewFaulty(memstore.New())
	s.On("CompareAndSwap", idemtest.Times(1, idemtest.Lose)) // the completion
	if got, err := idem.Do(context.Background(), s, "k", ok); err != nil || got != "ok" {
		t.Fatalf("got %q, %v; want ok", got, err)
	}
	ran := false
	again := func(context.Context) (string, error) { ran = true; return "again", nil }
	if got, err := idem.Do(context.Background(), s, "k", again); err != nil || got != "ok" || ran {
		t.Fatalf("duplicate: got %q, %v, ran %v; want the stored ok, replayed", got, err, ran)
	}
}

// TestReleaseLostResponse: the release after a failed fn is resent after a
// lost response; the resend finds the key gone, which is success.
func TestReleaseLostResponse(t *testing.T) {
	s := idemtest.NewFaulty(memstore.New())
	s.On("CompareAndDelete", idemtest.Times(1, idemtest.Resend))
	boom := errors.New("boom")
	_, err := idem.Do(context.Background(), s, "k", func(context.Context) (int, error) { return 0, boom })
	if !errors.Is(err, boom) || errors.Is(err, idem.ErrLeaseLost) {
		t.Fatalf("got %v, want fn's error alone", err)
	}
	got, err := idem.Do(context.Background(), s, "k", func(context.Context) (int, error) { return 1, nil })
	if err != nil || got != 1 {
		t.Fatalf("retry after release: got %d, %v", got, err)
	}
}

// TestExtendLostResponse: an extension applied but reported lost is
// settled by its retry, which finds its own record; completion then works
// on the newer version.
func TestExtendLostResponse(t *testing.T) {
	s := idemtest.NewFaulty(memstore.New())
	ctx := context.Background()
	lease, _, err := idem.Claim(ctx, s, "k")
	if err != nil {
		t.Fatal(err)
	}
	s.On("CompareAndSwap", idemtest.Times(1, idemtest.Lose)) // the extension
	if err := lease.Extend(ctx, time.Minute); err != nil {
		t.Fatalf("Extend: got %v, want it settled", err)
	}
	if err := lease.Complete(ctx, []byte(`"done"`)); err != nil {
		t.Fatalf("Complete after a lost extension: %v", err)
	}
	_, rec, err := idem.Claim(ctx, s, "k")
	if err != nil || rec == nil || string(rec) != `"done"` {
		t.Fatalf("got %+v, %v; want the completed record", rec, err)
	}
}

// TestHeartbeat: fn runs for four leases; the heartbeat keeps the key
// exclusive, so a duplicate sees it in progress instead of taking it over.
// On synctest's fake clock: a 150ms lease is extended every 50ms, so 600ms
// of fn make exactly 11 extensions (at 50ms, 100ms, ... 550ms), then the
// completion.
func TestHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idemtest.NewCounting(memstore.New())
		ctx := context.Background()
		done := make(chan error, 1)
		go func() {
			_, err := idem.Do(ctx, s, "long", func(context.Context) (int, error) {
				time.Sleep(600*time.Millisecond - time.Nanosecond)
				return 1, nil
			}, idem.WithLease(150*time.Millisecond))
			done <- err
		}()
		for range 5 {
			time.Sleep(100 * time.Millisecond)
			_, err := idem.Do(ctx, s, "long", func(context.Context) (int, error) { return 2, nil })
			if !errors.Is(err, idem.ErrInProgress) {
				t.Fatalf("duplicate during a long fn: got %v, want ErrInProgress", err)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := s.Counts().CompareAndSwap; n != 12 {
			t.Errorf("got %d CompareAndSwaps, want 11 extensions and the completion", n)
		}
	})
}

// TestTakeoverCancelsFn: another caller takes the key over while fn runs
// (its clock says the lease has passed). The owner's next heartbeat is
// refused, fn's context is cancelled with ErrLeaseLost, Do reports it, and
// the new owner's record is untouched.
func TestTakeoverCancelsFn(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	cause := make(chan error, 1)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := idem.Do(ctx, s, "k", func(ctx context.Context) (int, error) {
			close(started)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return 0, ctx.Err()
		}, idem.WithLease(time.Minute), idem.WithHeartbeat(20*time.Millisecond))
		done <- err
	}()
	<-started
	future := func() time.Time { return time.Now().Add(time.Hour) }
	heir, _, err := idem.Claim(ctx, s, "k", idem.WithClock(future))
	if err != nil || heir == nil || heir.Attempt() == 1 {
		t.Fatalf("takeover: got %v, %v", heir, err)
	}
	if c := <-cause; !errors.Is(c, idem.ErrLeaseLost) {
		t.Errorf("fn's context cause: got %v, want ErrLeaseLost", c)
	}
	if err := <-done; !errors.Is(err, idem.ErrLeaseLost) {
		t.Errorf("Do: got %v, want ErrLeaseLost", err)
	}
	if err := heir.Complete(ctx, []byte(`"heir"`)); err != nil {
		t.Fatalf("the old owner disturbed the heir's claim: %v", err)
	}
}

// TestUnreachableStoreCancelsFn: heartbeats fail (the store is unreachable)
// until the lease passes; fn is cancelled with ErrLeaseLost rather than
// running on while a duplicate could take over, and Do reports it.
func TestUnreachableStoreCancelsFn(t *testing.T) {
	s := idemtest.NewFaulty(memstore.New())
	ctx := context.Background()
	started := make(chan struct{})
	begin := time.Now()
	_, err := idem.Do(ctx, s, "k", func(ctx context.Context) (int, error) {
		// From here on, every CompareAndSwap fails without being sent.
		s.On("CompareAndSwap", idemtest.Fail(errors.New("injected: store unreachable")))
		close(started)
		<-ctx.Done()
		return 0, ctx.Err()
	}, idem.WithLease(200*time.Millisecond), idem.WithHeartbeat(50*time.Millisecond))
	if !errors.Is(err, idem.ErrLeaseLost) {
		t.Fatalf("Do: got %v, want ErrLeaseLost", err)
	}
	if el := time.Since(begin); el < 200*time.Millisecond {
		t.Errorf("fn cancelled after %v, before its lease passed", el)
	}
}

func TestPanicReleases(t *testing.T) {
	s := memstore.New()
	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Fatalf("recovered %v, want the original panic", r)
			}
		}()
		idem.Do(context.Background(), s, "k", func(context.Context) (int, error) { panic("kaboom") })
	}()
	if _, _, err := idem.Claim(context.Background(), s, "k"); err != nil {
		t.Fatalf("a claim after the panic: %v, want the key released", err)
	}
	if got, err := idem.Do(context.Background(), s, "k2", func(context.Context) (int, error) { return 3, nil }); err != nil || got != 3 {
		t.Fatalf("another key after a panic: got %d, %v", got, err)
	}
}

// TestCallerGivesUp: the caller's context is cancelled while fn finishes;
// the result is still stored, so a retry gets it instead of running again.
func TestCallerGivesUp(t *testing.T) {
	s := memstore.New()
	ctx, cancel := context.WithCancel(context.Background())
	var runs atomic.Int32
	fn := func(context.Context) (int, error) { runs.Add(1); cancel(); return 9, nil }
	if got, err := idem.Do(ctx, s, "k", fn); err != nil || got != 9 {
		t.Fatalf("got %d, %v", got, err)
	}
	if got, err := idem.Do(context.Background(), s, "k", fn); err != nil || got != 9 || runs.Load() != 1 {
		t.Fatalf("retry: got %d, %v, %d runs; want 9 from the store", got, err, runs.Load())
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	s := idemtest.NewCounting(memstore.New())
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		key  string
		opts []idem.Option
	}{
		{"empty key", "", nil},
		{"invalid UTF-8", "\xff", nil},
		{"zero lease", "k", []idem.Option{idem.WithLease(0)}},
		{"negative ttl", "k", []idem.Option{idem.WithRetention(-time.Hour)}},
		{"negative wait", "k", []idem.Option{idem.WithWait(-time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := idem.Do(ctx, s, tc.key, ok, tc.opts...)
			if !errors.Is(err, idem.ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
	if _, _, err := (idem.Counter{Store: s, Key: "c"}).Add(ctx, "", 1); !errors.Is(err, idem.ErrInvalid) {
		t.Errorf("Add with an empty operation ID: got %v, want ErrInvalid", err)
	}
	if n := s.Counts().Total(); n != 0 {
		t.Fatalf("bad input reached the store %d times, want 0", n)
	}
}

func TestCorruptRecord(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	if _, err := s.PutIfAbsent(ctx, "k", []byte("not a record"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := idem.Do(ctx, s, "k", ok); !errors.Is(err, idem.ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

func TestKeyPrefix(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	if _, err := idem.Do(ctx, s, "42", ok, idem.WithKeyPrefix("payments/")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "payments/42"); err != nil {
		t.Fatalf("prefixed key not stored: %v", err)
	}
}

func TestUpdateGivesUp(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	calls := 0
	_, err := idem.Update(ctx, s, "k", func(v []byte, exists bool) ([]byte, error) {
		calls++
		// Another writer always gets in between our read and our write.
		if _, _, err := s.Upsert(ctx, "k", []byte("theirs"), int64(100+calls), 0); err != nil {
			t.Fatal(err)
		}
		return []byte("ours"), nil
	}, idem.WithAttempts(3))
	if !errors.Is(err, idem.ErrConflict) || calls != 3 {
		t.Fatalf("got %v after %d calls, want ErrConflict after 3", err, calls)
	}
}

func TestAddWindow(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	add := func(op string) bool {
		_, applied, err := idem.Counter{Store: s, Key: "c", Window: 2}.Add(ctx, op, 1)
		if err != nil {
			t.Fatal(err)
		}
		return applied
	}
	steps := []struct {
		op   string
		want bool
	}{{"a", true}, {"a", false}, {"b", true}, {"a", false}, {"c", true}, {"b", false}, {"a", true}}
	for i, st := range steps {
		if got := add(st.op); got != st.want {
			t.Errorf("step %d (%s): got applied %v, want %v", i, st.op, got, st.want)
		}
	}
	if total, _ := (idem.Counter{Store: s, Key: "c"}).Value(ctx); total != 4 {
		t.Errorf("total: got %d, want 4", total)
	}
}

func TestFingerprint(t *testing.T) {
	a, err := idem.FingerprintJSON([]byte(`{"amount": 100, "currency":"EUR", "meta":{"b":1,"a":[1,2]}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := idem.FingerprintJSON([]byte(`{"meta":{"a":[1,2],"b":1},"currency":"EUR","amount":100}`))
	c, _ := idem.FingerprintJSON([]byte(`{"amount": 101, "currency":"EUR", "meta":{"b":1,"a":[1,2]}}`))
	if string(a) != string(b) {
		t.Error("field order changed the fingerprint")
	}
	if string(a) == string(c) {
		t.Error("a different amount gave the same fingerprint")
	}
	type req struct {
		Currency string `json:"currency"`
		Amount   int    `json:"amount"`
	}
	s, _ := idem.Fingerprint(req{"EUR", 100})
	m, _ := idem.Fingerprint(map[string]any{"amount": 100, "currency": "EUR"})
	if string(s) != string(m) {
		t.Error("a struct and an equal map got different fingerprints")
	}
	if _, err := idem.FingerprintJSON([]byte(`{"a":1} {}`)); err == nil {
		t.Error("trailing data accepted")
	}
	if string(idem.FingerprintParts([]byte("ab"), []byte("c"))) == string(idem.FingerprintParts([]byte("a"), []byte("bc"))) {
		t.Error("FingerprintParts is ambiguous")
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		want  string
	}{
		{[]string{"charge", "cus_42", "ord/7"}, "charge/cus_42/ord%2F7"},
		{[]string{"a/b", "c"}, "a%2Fb/c"},
		{[]string{"a", "b/c"}, "a/b%2Fc"},
	} {
		if got := idem.JoinKey(tc.parts...); got != tc.want {
			t.Errorf("Key(%q): got %q, want %q", tc.parts, got, tc.want)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(idem.EncodeRecord(idem.Record{Status: idem.StatusInProgress, Token: "t", Attempt: 1}))
	f.Add([]byte(`{"status":"completed","token":"x","result":"eyJhIjoxfQ=="}`))
	f.Add([]byte(`{"status":"weird"}`))
	f.Add([]byte(`null`))
	f.Add(idem.EncodeRecord(idem.Record{Status: idem.StatusCompleted, Token: "t", Fingerprint: []byte("fp"), Result: []byte(`{"a":1}`),
		Attempt: 2, CreatedAt: time.Unix(1, 2), CompletedAt: time.Unix(3, 4)}))
	f.Add(idem.EncodeRecord(idem.Record{Status: idem.StatusCompleted, Token: "t", Error: &idem.StoredError{Message: "m", Code: "c"}, Attempt: 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := idem.DecodeRecord("k", data)
		if err != nil {
			if !errors.Is(err, idem.ErrCorrupt) {
				t.Fatalf("decode error %v does not match ErrCorrupt", err)
			}
			return
		}
		enc := idem.EncodeRecord(r)
		again, err := idem.DecodeRecord("k", enc)
		if err != nil {
			t.Fatalf("a decoded record does not round-trip: %v", err)
		}
		if re := idem.EncodeRecord(again); !bytes.Equal(re, enc) {
			t.Fatalf("round trip changed the record: %v vs %v", again, r)
		}
	})
}

// FuzzFingerprintJSON: whitespace around a document FingerprintJSON accepts
// does not change its fingerprint.
func FuzzFingerprintJSON(f *testing.F) {
	f.Add([]byte(`{"b":1,"a":2}`))
	f.Add([]byte(`[1, 2.50, "x", null, true]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fp, err := idem.FingerprintJSON(data)
		if err != nil {
			return
		}
		again, err := idem.FingerprintJSON([]byte(" " + string(data) + "\n"))
		if err != nil || string(again) != string(fp) {
			t.Fatalf("whitespace changed the fingerprint of %q", data)
		}
	})
}

func TestLeaseFrom(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	if _, ok := idem.LeaseFrom(ctx); ok {
		t.Fatal("LeaseFrom found a lease outside Do")
	}
	got, err := idem.Do(ctx, s, "k", func(ctx context.Context) (string, error) {
		l, ok := idem.LeaseFrom(ctx)
		if !ok {
			return "", errors.New("no lease in fn's context")
		}
		return fmt.Sprintf("%s %d %v", l.Key(), l.Attempt(), l.Attempt() > 1), nil
	}, idem.WithKeyPrefix("p/"))
	if err != nil || got != "p/k 1 false" {
		t.Fatalf("got %q, %v; want \"p/k 1 false\"", got, err)
	}
}

// TestReleaseUnknownOutcome: the store cannot settle a lost response to the
// release (a deletion leaves nothing to recognise); the lease settles it by
// its owner token.
func TestReleaseUnknownOutcome(t *testing.T) {
	s := idemtest.NewFaulty(memstore.New())
	s.On("CompareAndDelete", idemtest.Times(1, idemtest.Lose))
	boom := errors.New("boom")
	_, err := idem.Do(context.Background(), s, "k", func(context.Context) (int, error) { return 0, boom })
	if !errors.Is(err, boom) || errors.Is(err, idem.ErrUnknownOutcome) {
		t.Fatalf("got %v, want fn's error alone", err)
	}
	if got, err := idem.Do(context.Background(), s, "k", func(context.Context) (int, error) { return 1, nil }); err != nil || got != 1 {
		t.Fatalf("retry after the release: got %d, %v", got, err)
	}
}

// TestAddLostResponse: Add's write is applied but reported as of unknown
// outcome (PutIfAbsent for a new counter, CompareAndSwap after). Add retries,
// recognises its own operation by its nonce, and counts it once, as applied.
func TestAddLostResponse(t *testing.T) {
	s := idemtest.NewFaulty(memstore.New())
	ctx := context.Background()
	for i, op := range []string{"PutIfAbsent", "CompareAndSwap"} {
		s.On(op, idemtest.Times(1, idemtest.Lose))
		total, applied, err := idem.Counter{Store: s, Key: "c"}.Add(ctx, fmt.Sprint("op-", i), 10)
		if err != nil || !applied || total != int64(10*(i+1)) {
			t.Fatalf("%s lost: got total %d, applied %v, %v; want %d, true", op, total, applied, err, 10*(i+1))
		}
	}
	// A duplicate delivery of op-1 is still a duplicate.
	if total, applied, err := (idem.Counter{Store: s, Key: "c"}).Add(ctx, "op-1", 10); err != nil || applied || total != 20 {
		t.Fatalf("duplicate: got total %d, applied %v, %v; want 20, false", total, applied, err)
	}
}

// TestKeepAlive: an adapter holding a Lease from Claim keeps it alive while
// its work runs; a takeover cancels the work's context with ErrLeaseLost.
// On synctest's fake clock: a 10ms interval makes exactly 5 extensions in
// 55ms, and the first tick after the takeover ends the work's context.
func TestKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idemtest.NewCounting(memstore.New())
		ctx := context.Background()
		lease, _, err := idem.Claim(ctx, s, "k", idem.WithLease(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		kctx, stop := lease.KeepAlive(ctx, 10*time.Millisecond)
		defer stop()
		time.Sleep(55 * time.Millisecond)
		synctest.Wait()
		if n := s.Counts().CompareAndSwap; n != 5 {
			t.Errorf("got %d extensions in 55ms at a 10ms interval, want 5", n)
		}
		if kctx.Err() != nil {
			t.Fatalf("context cancelled while the lease is held: %v", context.Cause(kctx))
		}
		future := func() time.Time { return time.Now().Add(time.Hour) }
		if heir, _, err := idem.Claim(ctx, s, "k", idem.WithClock(future)); err != nil || heir == nil {
			t.Fatalf("takeover: %v", err)
		}
		start := time.Now()
		<-kctx.Done()
		if waited := time.Since(start); waited > 10*time.Millisecond {
			t.Errorf("the work's context ended %v after the takeover, want by the next tick (10ms)", waited)
		}
		if c := context.Cause(kctx); !errors.Is(c, idem.ErrLeaseLost) {
			t.Errorf("cause: got %v, want ErrLeaseLost", c)
		}
		stop()
		stop() // a second stop is harmless
	})
}

// TestKeepAliveStop: the heartbeat starts nothing before its first tick,
// so a stop before it leaves no extension to come; a stop during an
// extension waits for it, so no heartbeat write outlives stop. On
// synctest's fake clock.
func TestKeepAliveStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := idemtest.NewFaulty(memstore.New())
		s := idemtest.NewCounting(f)
		ctx := context.Background()
		lease, _, err := idem.Claim(ctx, s, "k", idem.WithLease(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		_, stop := lease.KeepAlive(ctx, 10*time.Millisecond)
		time.Sleep(9 * time.Millisecond)
		stop()
		time.Sleep(time.Second)
		if n := s.Counts().CompareAndSwap; n != 0 {
			t.Fatalf("got %d extensions after a stop before the first tick, want 0", n)
		}

		slow := make(chan struct{})
		f.On("CompareAndSwap", func(ctx context.Context, c idemtest.Call, send func() error) error {
			<-slow
			return send()
		})
		_, stop = lease.KeepAlive(ctx, 10*time.Millisecond)
		time.Sleep(15 * time.Millisecond) // the first extension is in flight
		var stopped atomic.Bool
		go func() { stop(); stopped.Store(true) }()
		synctest.Wait()
		if stopped.Load() {
			t.Fatal("stop returned while an extension was in flight")
		}
		close(slow)
		synctest.Wait()
		if !stopped.Load() {
			t.Fatal("stop did not return once the extension was over")
		}
		if n := s.Counts().CompareAndSwap; n != 1 {
			t.Errorf("got %d extensions, want the one in flight", n)
		}
	})
}

// TestClaimGivesUp: a claim whose writes keep ending in unknown outcomes
// (each followed by a read that finds nothing) backs off between them and
// gives up after a bounded number of tries with an error matching
// ErrUnknownOutcome (no race was lost), and fn never runs. On synctest's
// clock, so the backoff costs no real time.
func TestClaimGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Every PutIfAbsent is lost before it is sent, as by a store cut off
		// from its database mid-request: nothing is written, and every
		// answer is an unknown outcome.
		f := idemtest.NewFaulty(memstore.New())
		f.On("PutIfAbsent", idemtest.Drop)
		s := idemtest.NewCounting(f)
		ran := false
		start := time.Now()
		_, err := idem.Do(context.Background(), s, "k", func(context.Context) (int, error) { ran = true; return 1, nil })
		if !errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, idem.ErrConflict) || ran {
			t.Fatalf("got %v, ran %v; want a bounded failure matching ErrUnknownOutcome alone, fn not run", err, ran)
		}
		if n := s.Counts().PutIfAbsent; n != 9 {
			t.Errorf("got %d claim attempts, want 9 (the first and 8 more)", n)
		}
		if waited := time.Since(start); waited < time.Second {
			t.Errorf("the attempts spanned %v, want them backed off", waited)
		}
	})
}

// TestPermanentErrorWithoutErr: a PermanentError with a code and no Err is
// stored and replayed like any other (it panicked inside Do, leaving the
// key claimed for its lease).
func TestPermanentErrorWithoutErr(t *testing.T) {
	s := memstore.New()
	runs := 0
	fn := func(context.Context) (int, error) {
		runs++
		return 0, &idem.PermanentError{Code: "sold_out"}
	}
	for i, want := range []bool{false, true} {
		_, err := idem.Do(t.Context(), s, "order-9", fn)
		perm, ok := errors.AsType[*idem.PermanentError](err)
		if !ok || perm.Code != "sold_out" || perm.Replayed != want || !strings.Contains(err.Error(), "sold_out") {
			t.Fatalf("call %d: got %v (%#v), want the permanent error sold_out, replayed %v", i+1, err, perm, want)
		}
	}
	if runs != 1 {
		t.Errorf("fn ran %d times, want 1", runs)
	}
}
