package idemlambda_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemlambda"
	"github.com/idemkit/idemkit/internal/storetest"
)

var errFirstRun = errors.New("the first run fails")

// testContextEndsDuringClaim: the invocation's context ends (a deadline
// the caller set short of the function's; here the hook cancels it) while
// the claim's write is in flight, and the write was applied. The write is
// the PutIfAbsent of a fresh key, or the CompareAndSwap that claims a key
// an earlier invocation released (its handler failed; the released record
// stays, so the next claim swaps it). Provoked by storetest.HangUp, whose hook
// cancels the context after the write and before its answer. The handler
// must not run for that invocation, and the retry (a new invocation, a
// redelivered record) must run it at once instead of finding the key in
// progress until the first invocation's lease passes.
func testContextEndsDuringClaim(t *testing.T, s idem.Store) {
	wrappers := []struct {
		name string
		wrap countingWrapper
	}{
		{"Wrap", countingWrap},
		{"SQS", countingSQS},
		{"APIGateway", countingAPIGateway},
	}
	for _, w := range wrappers {
		for _, tc := range []struct {
			name     string
			on       string
			released bool // the key was released before the context ends
		}{
			{"fresh key", "PutIfAbsent", false},
			{"released key", "CompareAndSwap", true},
		} {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				checkContextEndsDuringClaim(t, &storetest.HangUp{Store: s, On: tc.on}, w.wrap, tc.released)
			})
		}
	}
}

// checkContextEndsDuringClaim ends an invocation's context while hs is
// writing its claim (after releasing the key first, if released), and
// checks that its handler did not run and that the retries run it once.
func checkContextEndsDuringClaim(t *testing.T, hs *storetest.HangUp, wrap countingWrapper, released bool) {
	var runs atomic.Int64
	var fail atomic.Bool
	fail.Store(released)
	invoke := wrap(t, hs, &runs, &fail)
	if released {
		if err := invoke(invocation(t, time.Minute)); err == nil {
			t.Fatal("the invocation that releases the key succeeded")
		}
	}
	before := runs.Load()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hook := func() { cancel() }
	hs.Arm(hook)
	invoke(ctx)
	if got := runs.Load() - before; got != 0 {
		t.Fatalf("the handler ran %d times for an invocation whose context had ended, want 0", got)
	}
	if err := invoke(invocation(t, time.Minute)); err != nil || runs.Load()-before != 1 {
		t.Errorf("retry: %d runs, err %v; want the handler to run once now", runs.Load()-before, err)
	}
	if err := invoke(invocation(t, time.Minute)); err != nil || runs.Load()-before != 1 {
		t.Errorf("second retry: %d runs, err %v; want the stored result", runs.Load()-before, err)
	}
}

// countingWrapper wraps a handler that counts its runs and fails the first
// one if fail is set; the invocations it returns all carry the same key,
// and report what went wrong.
type countingWrapper func(t *testing.T, s idem.Store, runs *atomic.Int64, fail *atomic.Bool) func(ctx context.Context) error

// countingWrap is a countingWrapper of Wrap.
func countingWrap(t *testing.T, s idem.Store, runs *atomic.Int64, fail *atomic.Bool) func(ctx context.Context) error {
	h, err := idemlambda.Wrap(s, orderKey, func(ctx context.Context, o order) (receipt, error) {
		n := runs.Add(1)
		if fail.Swap(false) {
			return receipt{}, errFirstRun
		}
		return receipt{OrderID: o.ID, Run: n}, nil
	}, prefix())
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context) error {
		_, err := h(ctx, order{ID: "o-1"})
		return err
	}
}

// countingSQS is a countingWrapper of SQS.
func countingSQS(t *testing.T, s idem.Store, runs *atomic.Int64, fail *atomic.Bool) func(ctx context.Context) error {
	h, err := idemlambda.SQS(s, func(context.Context, events.SQSMessage) error {
		runs.Add(1)
		if fail.Swap(false) {
			return errFirstRun
		}
		return nil
	}, prefix())
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context) error {
		if r, _ := h(ctx, batch(standardQueue, "m-1")); len(r.BatchItemFailures) > 0 {
			return fmt.Errorf("batch item failures %s", failures(r))
		}
		return nil
	}
}

// countingAPIGateway is a countingWrapper of APIGateway; a failed run
// answers 503, which releases the key.
func countingAPIGateway(t *testing.T, s idem.Store, runs *atomic.Int64, fail *atomic.Bool) func(ctx context.Context) error {
	a := &api{}
	h, err := idemlambda.APIGateway(s, func(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
		runs.Add(1)
		if fail.Swap(false) {
			return events.APIGatewayProxyResponse{StatusCode: http.StatusServiceUnavailable}, nil
		}
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
}
