package dynamo_test

import (
	"context"
	"errors"
	"maps"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The tests in this file break requests on the wire, through the wire
// RoundTripper in front of a real server: a request reaches the server and
// is applied but its response is dropped; a connection breaks while the
// request is being written; the transport reads the request body late.
// After a response that may have been applied is lost, the SDK must send
// nothing more for that call, and the Store settles by reading the key
// once: its own write token proves the write applied, anything else leaves
// the outcome unknown.

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
				before := time.Now()
				it, err := s.PutIfAbsent(ctx, key, []byte("mine"), time.Hour)
				if err != nil {
					t.Fatalf("PutIfAbsent after a lost response: %v, want success (own write, found by its token)", err)
				}
				if fresh := before.Add(-time.Second).UnixMicro(); it.Version < fresh { // the wall clock may step back a little
					t.Errorf("PutIfAbsent: version %d, want a fresh version (about %d)", it.Version, before.UnixMicro())
				}
				checkItem(t, "PutIfAbsent", it, key, "mine", it.Version)
				checkRequests(t, w, map[string]int{"PutItem": 1, "GetItem": 1})
				stored, err := plain.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				checkItem(t, "stored", stored, key, "mine", it.Version)
				if !stored.ExpiresAt.Equal(it.ExpiresAt) {
					t.Errorf("stored ExpiresAt %v, returned %v", stored.ExpiresAt, it.ExpiresAt)
				}
			})

			t.Run("CompareAndSwap", func(t *testing.T) {
				key := "cas/" + t.Name()
				first, err := s.PutIfAbsent(ctx, key, []byte("v1"), 0)
				if err != nil {
					t.Fatal(err)
				}
				w.take()
				w.inject("PutItem", fault{drop: true})
				it, err := s.CompareAndSwap(ctx, key, first.Version, []byte("v2"), 0)
				if err != nil {
					t.Fatalf("CompareAndSwap after a lost response: %v, want success (own write)", err)
				}
				checkItem(t, "CompareAndSwap", it, key, "v2", first.Version+1)
				checkRequests(t, w, map[string]int{"PutItem": 1, "GetItem": 1})
				stored, err := plain.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				checkItem(t, "stored", stored, key, "v2", first.Version+1)
			})

			t.Run("Upsert", func(t *testing.T) {
				key := "upsert/" + t.Name()
				w.take()
				w.inject("PutItem", fault{drop: true})
				it, applied, err := s.Upsert(ctx, key, []byte("v7"), 7, 0)
				if err != nil || !applied {
					t.Fatalf("Upsert after a lost response: applied %v, err %v; want applied (own write)", applied, err)
				}
				checkItem(t, "Upsert", it, key, "v7", 7)
				checkRequests(t, w, map[string]int{"PutItem": 1, "GetItem": 1})
			})

			// A deletion leaves nothing to find: the outcome is unknown, and
			// nothing is sent again.
			t.Run("CompareAndDelete", func(t *testing.T) {
				key := "cad/" + t.Name()
				first, err := s.PutIfAbsent(ctx, key, []byte("v1"), 0)
				if err != nil {
					t.Fatal(err)
				}
				w.take()
				w.inject("DeleteItem", fault{drop: true})
				err = s.CompareAndDelete(ctx, key, first.Version)
				if !errors.Is(err, idem.ErrUnknownOutcome) {
					t.Fatalf("CompareAndDelete after a lost response: got %v, want idem.ErrUnknownOutcome", err)
				}
				if errors.Is(err, idem.ErrConflict) {
					t.Errorf("an unknown outcome must not match idem.ErrConflict: %v", err)
				}
				checkRequests(t, w, map[string]int{"DeleteItem": 1})
				if _, err := plain.Get(ctx, key); !errors.Is(err, idem.ErrNotFound) {
					t.Errorf("Get after the delete: got %v, want ErrNotFound", err)
				}
				// Retrying settles it: the key is absent.
				err = s.CompareAndDelete(ctx, key, first.Version)
				var ce *idem.ConflictError
				if !errors.As(err, &ce) || ce.Exists || errors.Is(err, idem.ErrUnknownOutcome) {
					t.Errorf("retried CompareAndDelete: got %v, want a conflict with Exists false", err)
				}
			})

			// Another writer replaces our applied write before the Store
			// reads the key: the read finds their token, not ours, and
			// proves nothing either way.
			t.Run("OvertakenBeforeTheRead", func(t *testing.T) {
				key := "overtaken/" + t.Name()
				first, err := s.PutIfAbsent(ctx, key, []byte("v1"), 0)
				if err != nil {
					t.Fatal(err)
				}
				w.inject("PutItem", fault{drop: true, after: func() {
					if _, err := plain.CompareAndSwap(ctx, key, first.Version+1, []byte("theirs"), 0); err != nil {
						t.Errorf("the other writer's CompareAndSwap: %v", err)
					}
				}})
				_, err = s.CompareAndSwap(ctx, key, first.Version, []byte("mine"), 0)
				if !errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, idem.ErrConflict) {
					t.Fatalf("CompareAndSwap overtaken after a lost response: got %v, want idem.ErrUnknownOutcome only", err)
				}
				stored, err := plain.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				checkItem(t, "stored", stored, key, "theirs", first.Version+2)
			})

			// A throttled attempt never reached the table, so the SDK may
			// resend it, and the resend's refusal is a plain conflict.
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
				checkRequests(t, w, map[string]int{"PutItem": 2}) // throttled, then refused
			})

			// Another writer stores the very bytes we are about to write, at
			// the version we would produce, just before our request arrives;
			// it is refused, and its response lost. Only the write token
			// tells the item found by the read is not ours.
			t.Run("IdenticalWriteByAnother", func(t *testing.T) {
				key := "identical-write/" + t.Name()
				first, err := plain.PutIfAbsent(ctx, key, []byte("n=1"), 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := plain.CompareAndSwap(ctx, key, first.Version, []byte("n=2"), 0); err != nil {
					t.Fatal(err)
				}
				w.inject("PutItem", fault{drop: true})
				_, err = s.CompareAndSwap(ctx, key, first.Version, []byte("n=2"), 0)
				if err == nil {
					t.Fatal("CompareAndSwap refused by DynamoDB reported success: another writer's identical item taken for our own")
				}
				if !errors.Is(err, idem.ErrUnknownOutcome) {
					t.Errorf("got %v, want idem.ErrUnknownOutcome (the lost request may have been applied)", err)
				}
			})

			// Without any fault, a refusal is a conflict even when the stored
			// item equals ours: someone else wrote it.
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

// TestNoResendAfterLostResponse: a write is applied, its response is lost,
// and inside that gap (the drop fault's hook) another caller changes the
// key so that the write's own condition holds again. The SDK used to send
// the request again, which then applied a second time, or deleted the other
// caller's item: never again. Each call reports an unknown outcome, and the
// other caller's work survives.
func TestNoResendAfterLostResponse(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw)
			s := mustStore(t, c, name)
			plain := mustStore(t, raw, name)
			ctx := ctxT(t)

			// Our delete is applied; the other caller re-creates the key at
			// the very version the delete names, which a resend's condition
			// would accept.
			t.Run("DeleteItem", func(t *testing.T) {
				key := "delete/" + t.Name()
				it, err := s.PutIfAbsent(ctx, key, []byte("mine"), 0)
				if err != nil {
					t.Fatal(err)
				}
				w.take()
				w.inject("DeleteItem", fault{drop: true, after: func() {
					if _, applied, err := plain.Upsert(ctx, key, []byte("theirs"), it.Version, 0); err != nil || !applied {
						t.Errorf("the other caller's Upsert: applied %v, %v", applied, err)
					}
				}})
				err = s.CompareAndDelete(ctx, key, it.Version)
				if !errors.Is(err, idem.ErrUnknownOutcome) {
					t.Errorf("CompareAndDelete: got %v, want idem.ErrUnknownOutcome", err)
				}
				checkRequests(t, w, map[string]int{"DeleteItem": 1})
				stored, err := plain.Get(ctx, key)
				if err != nil {
					t.Fatalf("the other caller's item is gone: %v", err)
				}
				checkItem(t, "the other caller's item", stored, key, "theirs", it.Version)
			})

			// Our PutIfAbsent is applied; the other caller deletes it. A
			// resend would find the key absent and create it again.
			t.Run("PutIfAbsent", func(t *testing.T) {
				key := "put/" + t.Name()
				w.take()
				w.inject("PutItem", fault{drop: true, after: func() {
					it, err := plain.Get(ctx, key)
					if err == nil {
						err = plain.CompareAndDelete(ctx, key, it.Version)
					}
					if err != nil {
						t.Errorf("the other caller's delete: %v", err)
					}
				}})
				_, err := s.PutIfAbsent(ctx, key, []byte("mine"), 0)
				if !errors.Is(err, idem.ErrUnknownOutcome) {
					t.Errorf("PutIfAbsent: got %v, want idem.ErrUnknownOutcome", err)
				}
				checkRequests(t, w, map[string]int{"PutItem": 1, "GetItem": 1})
				if it, err := plain.Get(ctx, key); !errors.Is(err, idem.ErrNotFound) {
					t.Errorf("after the other caller's delete: got %+v, %v; want ErrNotFound (our write applied twice)", it, err)
				}
			})

			// Our Upsert at version 5 is applied; the other caller overwrites
			// it at 6, deletes it, and re-creates the key at 2. A resend's
			// condition (absent, or below 5) would hold again.
			t.Run("Upsert", func(t *testing.T) {
				key := "upsert/" + t.Name()
				w.take()
				w.inject("PutItem", fault{drop: true, after: func() {
					if _, applied, err := plain.Upsert(ctx, key, []byte("theirs"), 6, 0); err != nil || !applied {
						t.Errorf("the other caller's Upsert at 6: applied %v, %v", applied, err)
					}
					if err := plain.CompareAndDelete(ctx, key, 6); err != nil {
						t.Errorf("the other caller's delete: %v", err)
					}
					if _, applied, err := plain.Upsert(ctx, key, []byte("again"), 2, 0); err != nil || !applied {
						t.Errorf("the other caller's Upsert at 2: applied %v, %v", applied, err)
					}
				}})
				_, applied, err := s.Upsert(ctx, key, []byte("mine"), 5, 0)
				if !errors.Is(err, idem.ErrUnknownOutcome) {
					t.Errorf("Upsert: applied %v, %v; want idem.ErrUnknownOutcome", applied, err)
				}
				checkRequests(t, w, map[string]int{"PutItem": 1, "GetItem": 1})
				stored, err := plain.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				checkItem(t, "the other caller's item", stored, key, "again", 2)
			})

			// An Upsert applied and then overtaken by a higher version
			// before the read: it was applied, so "not applied" would be a
			// lie; the read cannot prove it either way.
			t.Run("UpsertOvertaken", func(t *testing.T) {
				key := "upsert-overtaken/" + t.Name()
				w.inject("PutItem", fault{drop: true, after: func() {
					if _, applied, err := plain.Upsert(ctx, key, []byte("theirs"), 10, 0); err != nil || !applied {
						t.Errorf("the other caller's Upsert at 10: applied %v, %v", applied, err)
					}
				}})
				_, applied, err := s.Upsert(ctx, key, []byte("mine"), 3, 0)
				if !errors.Is(err, idem.ErrUnknownOutcome) {
					t.Errorf("Upsert: applied %v, %v; want idem.ErrUnknownOutcome", applied, err)
				}
			})
		})
	}
}

// TestNeverWritten: the connection breaks while the request is being
// written (a cut fault: the headers and half of the body reach the server,
// then the write fails as a reset connection), as when a kept-alive
// connection the server has closed is reused. The server never had the
// whole request, so nothing was applied: the SDK may send it again, and a
// refusal of that resend is a plain conflict.
func TestNeverWritten(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw)
			s := mustStore(t, c, name)
			plain := mustStore(t, raw, name)
			ctx := ctxT(t)

			t.Run("PutIfAbsent", func(t *testing.T) {
				key := "put/" + t.Name()
				w.take()
				w.inject("PutItem", fault{cut: true})
				if _, err := s.PutIfAbsent(ctx, key, []byte("v"), 0); err != nil {
					t.Fatalf("PutIfAbsent after a cut request: %v, want success", err)
				}
				checkRequests(t, w, map[string]int{"PutItem": 2})
			})

			t.Run("CompareAndDelete", func(t *testing.T) {
				key := "cad/" + t.Name()
				it, err := s.PutIfAbsent(ctx, key, []byte("v"), 0)
				if err != nil {
					t.Fatal(err)
				}
				w.take()
				w.inject("DeleteItem", fault{cut: true})
				if err := s.CompareAndDelete(ctx, key, it.Version); err != nil {
					t.Fatalf("CompareAndDelete after a cut request: %v, want success", err)
				}
				checkRequests(t, w, map[string]int{"DeleteItem": 2})
				if _, err := plain.Get(ctx, key); !errors.Is(err, idem.ErrNotFound) {
					t.Errorf("Get after the delete: got %v, want ErrNotFound", err)
				}
			})

			// Another writer moves the item on between the cut attempt and
			// the resend: the resend is refused, and since the cut attempt
			// applied nothing, that refusal is the answer.
			t.Run("RefusedResend", func(t *testing.T) {
				key := "refused/" + t.Name()
				it, err := s.PutIfAbsent(ctx, key, []byte("v1"), 0)
				if err != nil {
					t.Fatal(err)
				}
				w.inject("PutItem", fault{cut: true, after: func() {
					if _, err := plain.CompareAndSwap(ctx, key, it.Version, []byte("theirs"), 0); err != nil {
						t.Errorf("the other writer's CompareAndSwap: %v", err)
					}
				}})
				_, err = s.CompareAndSwap(ctx, key, it.Version, []byte("mine"), 0)
				var ce *idem.ConflictError
				if !errors.As(err, &ce) || errors.Is(err, idem.ErrUnknownOutcome) {
					t.Fatalf("CompareAndSwap refused after a cut attempt: got %v, want a plain conflict", err)
				}
				checkItem(t, "conflict's current item", ce.Current, key, "theirs", it.Version+1)
			})
		})
	}
}

// TestRequestBodyClosedEarly forces the interleaving behind
// aws/aws-sdk-go-v2#2737: the server answers as soon as it has the whole
// request, the SDK closes the request body when the response arrives, and
// only then does net/http make its last read of that body (the check that
// nothing follows its declared length; the wire holds it back until the
// response is read). That read must not fail the write: net/http would
// close the connection under the response, losing it.
func TestRequestBodyClosedEarly(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw)
			s := mustStore(t, c, name)
			ctx := ctxT(t)
			key := "k"
			var it idem.Item
			for _, st := range []struct {
				name string
				op   string
				call func() error
			}{
				{"PutIfAbsent", "PutItem", func() (err error) { it, err = s.PutIfAbsent(ctx, key, []byte("a"), 0); return err }},
				{"CompareAndSwap", "PutItem", func() (err error) { it, err = s.CompareAndSwap(ctx, key, it.Version, []byte("b"), 0); return err }},
				{"Upsert", "PutItem", func() (err error) { it, _, err = s.Upsert(ctx, key, []byte("c"), it.Version+1, 0); return err }},
				{"CompareAndDelete", "DeleteItem", func() error { return s.CompareAndDelete(ctx, key, it.Version) }},
			} {
				wrote := make(chan error, 1)
				w.take()
				w.inject(st.op, fault{lateBodyCheck: true, wrote: wrote})
				if err := st.call(); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				select {
				case err := <-wrote:
					if err != nil {
						t.Errorf("%s: net/http's write of the request failed: %v", st.name, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: the request's write never finished", st.name)
				}
				checkRequests(t, w, map[string]int{st.op: 1})
			}
		})
	}
}

// TestConnectionRefused: an endpoint on a closed port refuses every
// connection. Nothing was sent, so the error is a plain one (the dial
// error inside), not an unknown outcome, and the SDK's resends are fine.
func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	closed := testenv.DynamoDBServer{Name: "closed", Endpoint: "http://" + addr}
	c, w := wired(closed.Client(t))
	s := mustStore(t, c, "t")
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		op   string
		call func() error
	}{
		{"PutIfAbsent", "PutItem", func() error { _, err := s.PutIfAbsent(ctx, "k", []byte("v"), 0); return err }},
		{"CompareAndSwap", "PutItem", func() error { _, err := s.CompareAndSwap(ctx, "k", 1, []byte("v"), 0); return err }},
		{"Upsert", "PutItem", func() error { _, _, err := s.Upsert(ctx, "k", []byte("v"), 1, 0); return err }},
		{"CompareAndDelete", "DeleteItem", func() error { return s.CompareAndDelete(ctx, "k", 1) }},
	} {
		w.take()
		err := tc.call()
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			t.Errorf("%s: got %v, want the dial error", tc.name, err)
		}
		if errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, idem.ErrConflict) {
			t.Errorf("%s: a refused connection is neither an unknown outcome nor a conflict: %v", tc.name, err)
		}
		checkRequests(t, w, map[string]int{tc.op: 3}) // the client's three attempts
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
				{"both lost", []fault{{drop: true}, {drop: true}}},
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
					got, err = idem.Do(ctx, s, key, fn)
					if err != nil || got != "charged" {
						t.Fatalf("duplicate Do: got %q, %v; want the stored result", got, err)
					}
					if n := runs.Load(); n != 1 {
						t.Fatalf("fn ran %d times, want 1", n)
					}
				})
			}
		})
	}
}

// TestUnknownOutcome: the write's response is lost and so is every response
// to the read that would settle it; the Store says the outcome is unknown
// instead of guessing, and sends the write only once.
func TestUnknownOutcome(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw, func(o *dynamodb.Options) { o.RetryMaxAttempts = 2 })
			s := mustStore(t, c, name)
			ctx := ctxT(t)
			w.inject("PutItem", fault{drop: true})
			w.inject("GetItem", fault{drop: true}, fault{drop: true})
			_, err := s.PutIfAbsent(ctx, "k", []byte("v"), 0)
			if !errors.Is(err, idem.ErrUnknownOutcome) || !strings.Contains(err.Error(), `PutIfAbsent "k"`) {
				t.Fatalf("PutIfAbsent with its response and the read's lost: got %v, want ErrUnknownOutcome naming PutIfAbsent and k", err)
			}
			if errors.Is(err, idem.ErrConflict) {
				t.Errorf("unknown outcome matches ErrConflict: %v", err)
			}
			checkRequests(t, w, map[string]int{"PutItem": 1, "GetItem": 2})
			// It was in fact applied.
			it, err := mustStore(t, raw, name).Get(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			checkItem(t, "stored", it, "k", "v", it.Version)
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

// checkRequests compares the requests counted since the last take with
// want. A response the wire lost without being asked to changes the
// counts; the test then says so rather than blaming the Store.
func checkRequests(t *testing.T, w *wire, want map[string]int) {
	t.Helper()
	got := w.take()
	if maps.Equal(got, want) {
		return
	}
	if lost := w.naturalLosses(); len(lost) > 0 {
		t.Errorf("requests: got %v, want %v; responses lost on their own: %q", got, want, lost)
		return
	}
	t.Errorf("requests: got %v, want %v", got, want)
}
