package idemhttp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
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

// testClientHangsUpDuringClaim: a client times out and closes its
// connection while the claim's write is in flight; the write was applied.
// Provoked on a real HTTP connection: the store's hook, run after the
// write, cancels the client's request and waits until the server has seen
// the connection close (the request's context is cancelled), then the
// write answers. The handler must not run for a client that has gone, and
// the client's retry with the same key must run it at once, not get 409
// until the first request's lease passes: one run in all.
func testClientHangsUpDuringClaim(t *testing.T, s idem.Store) {
	hs := &hangUpStore{Store: s}
	o := &orders{}
	mw := idemhttp.Middleware(hs)(o)
	var serverCtx atomic.Pointer[context.Context]
	served := make(chan struct{}, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		serverCtx.CompareAndSwap(nil, &ctx)
		mw.ServeHTTP(w, r)
		served <- struct{}{}
	}))
	defer srv.Close()

	key := idem.NewKey()
	post := func(ctx context.Context) (*http.Response, error) {
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/orders", strings.NewReader(`{"sku":"book"}`))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Idempotency-Key", key)
		return srv.Client().Do(r)
	}

	clientCtx, hangUp := context.WithCancel(context.Background())
	defer hangUp()
	hook := func() {
		hangUp() // the client's timeout fires
		select {
		case <-(*serverCtx.Load()).Done():
		case <-time.After(10 * time.Second):
			t.Error("the server did not see the client leave")
		}
	}
	hs.hook.Store(&hook)
	if resp, err := post(clientCtx); !errors.Is(err, context.Canceled) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("first request: got %v, want the client's cancellation", err)
	}
	<-served
	wantRuns(t, o, 0)

	resp, err := post(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-served
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("retry: status %d (Retry-After %q), want %d from the handler", resp.StatusCode, resp.Header.Get("Retry-After"), http.StatusCreated)
	}
	resp, err = post(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-served
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(idemhttp.ReplayedHeader) != "true" {
		t.Errorf("second retry: status %d, replayed %q; want the stored 201", resp.StatusCode, resp.Header.Get(idemhttp.ReplayedHeader))
	}
	wantRuns(t, o, 1)
}
