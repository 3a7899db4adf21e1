package idemhttp_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
	"github.com/idemkit/idemkit/internal/storetest"
)

// testClientHangsUpDuringClaim: a client times out and closes its
// connection while the claim's write is in flight; the write was applied.
// The write is the PutIfAbsent of a fresh key, or the CompareAndSwap that
// claims a key an earlier request released (its handler answered 503; the
// released record stays, so the next claim swaps it).
// Provoked on a real HTTP connection: the store's hook, run after the
// write, cancels the client's request and waits until the server has seen
// the connection close (the request's context is cancelled), then the
// write answers. The handler must not run for a client that has gone, and
// the client's retry with the same key must run it at once, not get 409
// until the first request's lease passes.
func testClientHangsUpDuringClaim(t *testing.T, s idem.Store) {
	for _, tc := range []struct {
		name     string
		on       string
		released bool // the key was released before the client hangs up
	}{
		{"fresh key", "PutIfAbsent", false},
		{"released key", "CompareAndSwap", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := &storetest.HangUp{Store: s, On: tc.on}
			var runs atomic.Int64
			var unavailable atomic.Bool // the first run answers 503
			unavailable.Store(tc.released)
			mw := idemhttp.Middleware(hs)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs.Add(1)
				if unavailable.Swap(false) {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusCreated)
			}))
			var serverCtx atomic.Pointer[context.Context]
			served := make(chan struct{}, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				serverCtx.Store(&ctx)
				mw.ServeHTTP(w, r)
				served <- struct{}{}
			}))
			defer srv.Close()

			key := rand.Text()
			post := func(ctx context.Context) (*http.Response, error) {
				r, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/orders", strings.NewReader(`{"sku":"book"}`))
				if err != nil {
					t.Fatal(err)
				}
				r.Header.Set("Idempotency-Key", key)
				resp, err := srv.Client().Do(r)
				if err == nil {
					resp.Body.Close()
				}
				<-served
				return resp, err
			}
			want := func(what string, resp *http.Response, err error, status int, replayed string) {
				t.Helper()
				switch {
				case err != nil:
					t.Fatalf("%s: %v", what, err)
				case resp.StatusCode != status || resp.Header.Get(idemhttp.ReplayedHeader) != replayed:
					t.Errorf("%s: status %d (Retry-After %q, replayed %q), want %d (replayed %q)", what,
						resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get(idemhttp.ReplayedHeader), status, replayed)
				}
			}
			if tc.released {
				resp, err := post(context.Background())
				want("the request that releases the key", resp, err, http.StatusServiceUnavailable, "")
			}
			before := runs.Load()

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
			hs.Arm(hook)
			if _, err := post(clientCtx); !errors.Is(err, context.Canceled) {
				t.Fatalf("the request that hangs up: got %v, want the client's cancellation", err)
			}
			if got := runs.Load() - before; got != 0 {
				t.Errorf("the handler ran %d times for a client that had gone, want 0", got)
			}
			resp, err := post(context.Background())
			want("retry", resp, err, http.StatusCreated, "")
			resp, err = post(context.Background())
			want("second retry", resp, err, http.StatusCreated, "true")
			if got := runs.Load() - before; got != 1 {
				t.Errorf("handler runs since the client hung up: got %d, want 1", got)
			}
		})
	}
}
