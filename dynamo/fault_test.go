package dynamo_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The tests in this file lose responses on the wire: the request reaches
// the server and is applied, its response is dropped, and the SDK's retryer
// sends it again. The resend's condition fails because of the first
// attempt, and the Store must recognise its own write.

func TestLostResponse(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw)
			s := mustStore(t, c, name)
			plain := mustStore(t, raw, name) // a second, fault-free client
			ctx := ctxT(t)

			t.Run("PutIfAbsent", func(t *testing.T) {
				key := "put/" + t.Name()
				w.take()
				w.inject("PutItem", fault{drop: true})
				it, err := s.PutIfAbsent(ctx, key, []byte("mine"), time.Hour)
				if err != nil {
					t.Fatalf("PutIfAbsent after a lost response: %v, want success (own write)", err)
				}
				checkItem(t, "PutIfAbsent", it, key, "mine", 1)
				if got := w.take()["PutItem"]; got != 2 {
					t.Errorf("PutItem requests: got %d, want 2 (the lost one and the resend)", got)
				}
				stored, err := plain.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				checkItem(t, "stored", stored, key, "mine", 1)
				if !stored.ExpiresAt.Equal(it.ExpiresAt) {
					t.Errorf("stored ExpiresAt %v, returned %v", stored.ExpiresAt, it.ExpiresAt)
				}
			})

			t.Run("CompareAndSwap", func(t *testing.T) {
				key := "cas/" + t.Name()
				if _, err := s.PutIfAbsent(ctx, key, []byte("v1"), 0); err != nil {
					t.Fatal(err)
				}
				w.take()
				w.inject("PutItem", fault{drop: true})
				it, err := s.CompareAndSwap(ctx, key, 1, []byte("v2"), 0)
				if err != nil {
					t.Fatalf("CompareAndSwap after a lost response: %v, want success (own write)", err)
				}
				checkItem(t, "CompareAndSwap", it, key, "v2", 2)
				if got := w.take()["PutItem"]; got != 2 {
					t.Errorf("PutItem requests: got %d, want 2", got)
				}
				stored, err := plain.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				checkItem(t, "stored", stored, key, "v2", 2)
			})

			t.Run("Upsert", func(t *testing.T) {
				key := "upsert/" + t.Name()
				w.inject("PutItem", fault{drop: true})
				it, applied, err := s.Upsert(ctx, key, []byte("v7"), 7, 0)
				if err != nil || !applied {
					t.Fatalf("Upsert after a lost response: applied %v, err %v; want applied (own write)", applied, err)
				}
				checkItem(t, "Upsert", it, key, "v7", 7)
			})

			// A resend that finds the key absent cannot tell our deletion
			// from someone else's: the outcome is reported as unknown.
			t.Run("CompareAndDelete", func(t *testing.T) {
				key := "cad/" + t.Name()
				if _, err := s.PutIfAbsent(ctx, key, []byte("v1"), 0); err != nil {
					t.Fatal(err)
				}
				w.take()
				w.inject("DeleteItem", fault{drop: true})
				err := s.CompareAndDelete(ctx, key, 1)
				if !errors.Is(err, idem.ErrUnknownOutcome) {
					t.Fatalf("CompareAndDelete after a lost response: got %v, want idem.ErrUnknownOutcome", err)
				}
				if errors.Is(err, idem.ErrConflict) {
					t.Errorf("an unknown outcome must not match idem.ErrConflict: %v", err)
				}
				var ccf *types.ConditionalCheckFailedException
				if !errors.As(err, &ccf) {
					t.Errorf("the SDK error is not in the chain: %v", err)
				}
				if got := w.take()["DeleteItem"]; got != 2 {
					t.Errorf("DeleteItem requests: got %d, want 2", got)
				}
				if _, err := plain.Get(ctx, key); !errors.Is(err, idem.ErrNotFound) {
					t.Errorf("Get after the delete: got %v, want ErrNotFound", err)
				}
				// Retrying settles it: the key is absent.
				err = s.CompareAndDelete(ctx, key, 1)
				var ce *idem.ConflictError
				if !errors.As(err, &ce) || ce.Exists || errors.Is(err, idem.ErrUnknownOutcome) {
					t.Errorf("retried CompareAndDelete: got %v, want a conflict with Exists false", err)
				}
			})

			// Another writer changes the item between the lost attempt and
			// the resend: the resend's refusal no longer shows our write,
			// which may or may not have been applied.
			t.Run("OvertakenBeforeResend", func(t *testing.T) {
				key := "overtaken/" + t.Name()
				if _, err := s.PutIfAbsent(ctx, key, []byte("v1"), 0); err != nil {
					t.Fatal(err)
				}
				w.inject("PutItem", fault{drop: true, after: func() {
					if _, err := plain.CompareAndSwap(ctx, key, 2, []byte("theirs"), 0); err != nil {
						t.Errorf("the other writer's CompareAndSwap: %v", err)
					}
				}})
				_, err := s.CompareAndSwap(ctx, key, 1, []byte("mine"), 0)
				if !errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, idem.ErrConflict) {
					t.Fatalf("CompareAndSwap overtaken after a lost response: got %v, want idem.ErrUnknownOutcome only", err)
				}
				stored, err := plain.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				checkItem(t, "stored", stored, key, "theirs", 3)
			})

			// A throttled attempt never reached the table, so it cannot
			// make a later refusal our own write: identical content written
			// by someone else is still a conflict.
			t.Run("ThrottledAttemptIsNotOwnWrite", func(t *testing.T) {
				key := "throttled/" + t.Name()
				if _, err := plain.PutIfAbsent(ctx, key, []byte("same"), 0); err != nil {
					t.Fatal(err)
				}
				w.take()
				w.inject("PutItem", fault{throttle: true})
				_, err := s.PutIfAbsent(ctx, key, []byte("same"), 0)
				var ce *idem.ConflictError
				if !errors.As(err, &ce) || !ce.Exists || errors.Is(err, idem.ErrUnknownOutcome) {
					t.Fatalf("PutIfAbsent after a throttled attempt: got %v, want a plain conflict", err)
				}
				if got := w.take()["PutItem"]; got != 2 {
					t.Errorf("PutItem requests: got %d, want 2 (throttled, then refused)", got)
				}
			})

			// Another writer stores the very bytes we are about to write, at
			// the version we would produce, just before our first attempt
			// arrives; that attempt is refused, its response lost, and the
			// resend finds an item identical to ours. Only the write token
			// tells it is not ours: the call must not report success.
			t.Run("IdenticalWriteByAnother", func(t *testing.T) {
				key := "identical-write/" + t.Name()
				if _, err := plain.PutIfAbsent(ctx, key, []byte("n=1"), 0); err != nil {
					t.Fatal(err)
				}
				if _, err := plain.CompareAndSwap(ctx, key, 1, []byte("n=2"), 0); err != nil {
					t.Fatal(err)
				}
				w.inject("PutItem", fault{drop: true})
				_, err := s.CompareAndSwap(ctx, key, 1, []byte("n=2"), 0)
				if err == nil {
					t.Fatal("CompareAndSwap refused on its first attempt reported success: another writer's identical item taken for our own")
				}
				if !errors.Is(err, idem.ErrUnknownOutcome) {
					t.Errorf("got %v, want idem.ErrUnknownOutcome (the lost attempt may have been applied)", err)
				}
			})

			// Without any resend, a refusal is a conflict even when the
			// stored item equals ours: someone else wrote it.
			t.Run("IdenticalValueIsConflict", func(t *testing.T) {
				key := "identical/" + t.Name()
				if _, err := plain.PutIfAbsent(ctx, key, []byte("same"), 0); err != nil {
					t.Fatal(err)
				}
				_, err := s.PutIfAbsent(ctx, key, []byte("same"), 0)
				if !errors.Is(err, idem.ErrConflict) {
					t.Fatalf("PutIfAbsent of an identical item: got %v, want idem.ErrConflict", err)
				}
			})

			if w.pending() {
				t.Error("some injected faults were never used")
			}
		})
	}
}

// TestLostResponseDo loses the responses of Do's claim and of its
// completion: fn still runs exactly once and the result is stored.
func TestLostResponseDo(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw)
			s := mustStore(t, c, name)
			ctx := ctxT(t)
			for _, tc := range []struct {
				name   string
				faults []fault // on PutItem: the claim, then the completion
			}{
				{"claim lost", []fault{{drop: true}}},
				{"completion lost", []fault{{}, {drop: true}}},
				{"both lost", []fault{{drop: true}, {}, {drop: true}}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					key := "do/" + t.Name()
					var runs atomic.Int32
					fn := func(context.Context) (string, error) {
						runs.Add(1)
						return "charged", nil
					}
					w.inject("PutItem", tc.faults...)
					got, err := idem.Do(ctx, s, key, fn)
					if err != nil || got != "charged" {
						t.Fatalf("Do with lost responses: got %q, %v; want charged", got, err)
					}
					if w.pending() {
						t.Fatal("the injected faults were not all used")
					}
					var replayed bool
					got, err = idem.Do(ctx, s, key, fn, idem.WithReplayed(&replayed))
					if err != nil || got != "charged" || !replayed {
						t.Fatalf("duplicate Do: got %q, replayed %v, %v; want the stored result", got, replayed, err)
					}
					if n := runs.Load(); n != 1 {
						t.Fatalf("fn ran %d times, want 1", n)
					}
				})
			}
		})
	}
}

// TestUnknownOutcome: when every attempt's response is lost, the write may
// have been applied; the Store says so instead of guessing.
func TestUnknownOutcome(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw, func(o *dynamodb.Options) { o.RetryMaxAttempts = 2 })
			s := mustStore(t, c, name)
			ctx := ctxT(t)
			w.inject("PutItem", fault{drop: true}, fault{drop: true})
			_, err := s.PutIfAbsent(ctx, "k", []byte("v"), 0)
			var ue *idem.UnknownOutcomeError
			if !errors.As(err, &ue) || ue.Key != "k" || ue.Op != "PutIfAbsent" {
				t.Fatalf("PutIfAbsent with every response lost: got %v, want *idem.UnknownOutcomeError for k", err)
			}
			if errors.Is(err, idem.ErrConflict) {
				t.Errorf("unknown outcome matches ErrConflict: %v", err)
			}
			// It was in fact applied; Claim-style callers settle it by reading.
			it, err := mustStore(t, raw, name).Get(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			checkItem(t, "stored", it, "k", "v", 1)
		})
	}
}

// TestDeadlineInFlight: a context that ends while a write is in flight
// leaves its outcome unknown; the error says so and keeps the context's.
func TestDeadlineInFlight(t *testing.T) {
	srv := testenv.DynamoDBServers(t)[0]
	raw, name := table(t, srv)
	c, w := wired(raw)
	s := mustStore(t, c, name)
	w.inject("PutItem", fault{stall: true})
	ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	_, err := s.PutIfAbsent(ctx, "k", []byte("v"), 0)
	if !errors.Is(err, idem.ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want an error matching idem.ErrUnknownOutcome and context.DeadlineExceeded", err)
	}
	// A context already done sends nothing, so nothing is unknown.
	w.take()
	_, err = s.PutIfAbsent(ctx, "k2", []byte("v"), 0)
	if errors.Is(err, idem.ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with a done context: got %v, want context.DeadlineExceeded only", err)
	}
	if got := w.take(); len(got) != 0 {
		t.Errorf("with a done context: requests %v, want none", got)
	}
}

// TestThrottled: a refused request (a 4xx) is a definite failure: it matches
// dynamo.ErrThrottled, keeps the SDK error, and is not an unknown outcome.
func TestThrottled(t *testing.T) {
	srv := testenv.DynamoDBServers(t)[0]
	raw, name := table(t, srv)
	c, w := wired(raw, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
	s := mustStore(t, c, name)
	w.inject("PutItem", fault{throttle: true})
	_, err := s.PutIfAbsent(ctxT(t), "k", []byte("v"), 0)
	if !errors.Is(err, dynamo.ErrThrottled) {
		t.Fatalf("got %v, want dynamo.ErrThrottled", err)
	}
	if errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, idem.ErrConflict) {
		t.Errorf("a throttled request is neither unknown nor a conflict: %v", err)
	}
	var apiErr interface{ ErrorCode() string }
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ThrottlingException" {
		t.Errorf("the SDK error is not in the chain: %v", err)
	}
}

func checkItem(t *testing.T, what string, it idem.Item, key, value string, version int64) {
	t.Helper()
	if it.Key != key || string(it.Value) != value || it.Version != version {
		t.Errorf("%s: got {%q %q v%d}, want {%q %q v%d}", what, it.Key, it.Value, it.Version, key, value, version)
	}
}
