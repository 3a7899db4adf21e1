package idemlambda_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemlambda"
)

// hangUpStore delegates PutIfAbsent and then, once, calls hook before it
// answers: the write has been applied and its answer is on its way. If
// the call's context has ended meanwhile it answers as a store does whose
// caller gave up mid-write: the outcome is unknown.
type hangUpStore struct {
	idem.Store
	hook atomic.Pointer[func()]
}

func (s *hangUpStore) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	it, err := s.Store.PutIfAbsent(ctx, key, value, ttl)
	if hook := s.hook.Swap(nil); hook != nil {
		(*hook)()
	}
	if cerr := ctx.Err(); cerr != nil {
		return idem.Item{}, &idem.UnknownOutcomeError{Key: key, Op: "PutIfAbsent", Err: cerr}
	}
	return it, err
}

// testContextEndsDuringClaim: the invocation's context ends (a deadline
// the caller set short of the function's; here the hook cancels it) while
// the claim's write is in flight, and the write was applied. Provoked by
// hangUpStore, whose hook cancels the context after the write and before
// its answer. The handler must not run for that invocation, and the retry
// (a new invocation, a redelivered record) must run it at once instead of
// finding the key in progress until the first invocation's lease passes:
// one run in all, for each wrapper.
func testContextEndsDuringClaim(t *testing.T, s idem.Store) {
	tests := []struct {
		name string
		// wrap wraps a handler that counts its runs; the invocations it
		// returns all carry the same key, and report what went wrong.
		wrap func(t *testing.T, s idem.Store, runs *atomic.Int64) func(ctx context.Context) error
	}{
		{"Wrap", func(t *testing.T, s idem.Store, runs *atomic.Int64) func(ctx context.Context) error {
			h, err := idemlambda.Wrap(s, orderKey, func(ctx context.Context, o order) (receipt, error) {
				return receipt{OrderID: o.ID, Run: runs.Add(1)}, nil
			}, prefix())
			if err != nil {
				t.Fatal(err)
			}
			return func(ctx context.Context) error {
				_, err := h(ctx, order{ID: "o-1"})
				return err
			}
		}},
		{"SQS", func(t *testing.T, s idem.Store, runs *atomic.Int64) func(ctx context.Context) error {
			h, err := idemlambda.SQS(s, func(context.Context, events.SQSMessage) error { runs.Add(1); return nil }, prefix())
			if err != nil {
				t.Fatal(err)
			}
			return func(ctx context.Context) error {
				if r, _ := h(ctx, batch(standardQueue, "m-1")); len(r.BatchItemFailures) > 0 {
					return fmt.Errorf("batch item failures %s", failures(r))
				}
				return nil
			}
		}},
		{"APIGateway", func(t *testing.T, s idem.Store, runs *atomic.Int64) func(ctx context.Context) error {
			a := &api{}
			h, err := idemlambda.APIGateway(s, func(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
				runs.Add(1)
				return a.handle(ctx, req)
			}, prefix())
			if err != nil {
				t.Fatal(err)
			}
			return func(ctx context.Context) error {
				r, err := h(ctx, apiRequest("POST", "k-1", `{"sku":"book"}`))
				if err == nil && r.StatusCode != http.StatusCreated {
					err = fmt.Errorf("status %d, body %s", r.StatusCode, r.Body)
				}
				return err
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := &hangUpStore{Store: s}
			var runs atomic.Int64
			invoke := tc.wrap(t, hs, &runs)

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			hook := func() { cancel() }
			hs.hook.Store(&hook)
			invoke(ctx)
			if got := runs.Load(); got != 0 {
				t.Fatalf("the handler ran %d times for an invocation whose context had ended, want 0", got)
			}
			if err := invoke(invocation(t, time.Minute)); err != nil || runs.Load() != 1 {
				t.Errorf("retry: %d runs, err %v; want the handler to run once now", runs.Load(), err)
			}
			if err := invoke(invocation(t, time.Minute)); err != nil || runs.Load() != 1 {
				t.Errorf("second retry: %d runs, err %v; want the stored result", runs.Load(), err)
			}
		})
	}
}
