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
			checkClientHangsUpDuringClaim(t, &storetest.HangUp{Store: s, On: tc.on}, tc.released)
		})
	}
}

// checkClientHangsUpDuringClaim hangs a client up while hs is writing its
// claim (after releasing the key first, if released), and checks that the
// handler did not run for it and that the retries run it once.
func checkClientHangsUpDuringClaim(t *testing.T, hs *storetest.HangUp, released bool) {
	srv := newHangUpServer(t, hs, released)
	if released {
		resp, err := srv.post(context.Background())
		wantResponse(t, "the request that releases the key", resp, err, http.StatusServiceUnavailable, "")
	}
	before := srv.runs.Load()

	clientCtx, hangUp := context.WithCancel(context.Background())
	defer hangUp()
	hook := func() {
		hangUp() // the client's timeout fires
		srv.waitGone(t)
	}
	hs.Arm(hook)
	if _, err := srv.post(clientCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the request that hangs up: got %v, want the client's cancellation", err)
	}
	if got := srv.runs.Load() - before; got != 0 {
		t.Errorf("the handler ran %d times for a client that had gone, want 0", got)
	}
	resp, err := srv.post(context.Background())
	wantResponse(t, "retry", resp, err, http.StatusCreated, "")
	resp, err = srv.post(context.Background())
	wantResponse(t, "second retry", resp, err, http.StatusCreated, "true")
	if got := srv.runs.Load() - before; got != 1 {
		t.Errorf("handler runs since the client hung up: got %d, want 1", got)
	}
}

// hangUpServer serves the middleware on a real connection, in front of a
// handler that counts its runs and answers 503 in its first if the key is
// to be released. Its requests all carry the same key.
type hangUpServer struct {
	*httptest.Server
	key         string
	runs        atomic.Int64
	unavailable atomic.Bool // the next run answers 503
	// serverCtx is the context of the latest request the server took.
	serverCtx atomic.Pointer[context.Context]
	// served gets a value each time the server has answered a request.
	served chan struct{}
}

func newHangUpServer(t *testing.T, s idem.Store, released bool) *hangUpServer {
	srv := &hangUpServer{key: rand.Text(), served: make(chan struct{}, 1)}
	srv.unavailable.Store(released)
	mw := idemhttp.Middleware(s)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.runs.Add(1)
		if srv.unavailable.Swap(false) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	srv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		srv.serverCtx.Store(&ctx)
		mw.ServeHTTP(w, r)
		srv.served <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// post sends a request with the server's key under ctx and returns once
// the server has answered it, whether or not the client stayed to read.
func (srv *hangUpServer) post(ctx context.Context) (*http.Response, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/orders", strings.NewReader(`{"sku":"book"}`))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Idempotency-Key", srv.key)
	resp, err := srv.Client().Do(r)
	if err == nil {
		resp.Body.Close()
	}
	<-srv.served
	return resp, err
}

// waitGone waits until the server has seen the client of its latest
// request leave (the request's context is cancelled).
func (srv *hangUpServer) waitGone(t *testing.T) {
	select {
	case <-(*srv.serverCtx.Load()).Done():
	case <-time.After(10 * time.Second):
		t.Error("the server did not see the client leave")
	}
}

// wantResponse checks the response to a request: status, and the value of
// its replayed header.
func wantResponse(t *testing.T, what string, resp *http.Response, err error, status int, replayed string) {
	t.Helper()
	switch {
	case err != nil:
		t.Fatalf("%s: %v", what, err)
	case resp.StatusCode != status || resp.Header.Get(idemhttp.ReplayedHeader) != replayed:
		t.Errorf("%s: status %d (Retry-After %q, replayed %q), want %d (replayed %q)", what,
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get(idemhttp.ReplayedHeader), status, replayed)
	}
}
