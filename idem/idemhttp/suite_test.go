package idemhttp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
	"github.com/idemkit/idemkit/idem/idemtest"
)

// runSuite runs the middleware's behaviour tests on the store newStore
// returns: memstore in every run, real servers when they are reachable.
// Each test uses keys of its own, so the store may be shared.
func runSuite(t *testing.T, newStore func(t *testing.T) idem.Store) {
	s := newStore(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, s idem.Store)
	}{
		{"FirstRunsThenReplays", testFirstRunsThenReplays},
		{"ReplayOnTheWire", testReplayOnTheWire},
		{"Mismatch", testMismatch},
		{"InFlight409", testInFlight409},
		{"InFlightWait", testInFlightWait},
		{"ServerErrorsRelease", testServerErrorsRelease},
		{"PanicReleases", testPanicReleases},
		{"ClientErrorsKept", testClientErrorsKept},
		{"Scoped", testScoped},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"LargeResponse", testLargeResponse},
		{"ClientHangsUpDuringClaim", testClientHangsUpDuringClaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

// orders is a handler that creates an order per request and counts its
// runs.
type orders struct {
	runs atomic.Int64
	// gate, if set, is received from by the first run before answering.
	gate chan struct{}
	// started, if set, is closed when the first run starts.
	started   chan struct{}
	startOnce sync.Once
}

func (o *orders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := o.runs.Add(1)
	if o.started != nil {
		o.startOnce.Do(func() { close(o.started) })
	}
	if o.gate != nil && n == 1 { // only the first run waits: a second one must show, not hang
		select {
		case <-o.gate:
		case <-r.Context().Done():
			http.Error(w, "gave up", http.StatusServiceUnavailable)
			return
		}
	}
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", fmt.Sprintf("/orders/%d", n))
	w.Header().Add("X-Trace", "a")
	w.Header().Add("X-Trace", "b")
	http.SetCookie(w, &http.Cookie{Name: "session", Value: "secret"})
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"order":%d,"request":%q}`, n, body)
}

type req struct {
	method, path, key, auth, body string
}

func send(t *testing.T, h http.Handler, q req) *httptest.ResponseRecorder {
	t.Helper()
	if q.method == "" {
		q.method = http.MethodPost
	}
	if q.path == "" {
		q.path = "/orders"
	}
	r := httptest.NewRequest(q.method, q.path, strings.NewReader(q.body))
	if q.key != "" {
		r.Header.Set("Idempotency-Key", q.key)
	}
	if q.auth != "" {
		r.Header.Set("Authorization", q.auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, want int) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status: got %d, want %d; body %s", w.Code, want, w.Body)
	}
}

// wantProblem checks an RFC 9457 response with the given status and code.
func wantProblem(t *testing.T, w *httptest.ResponseRecorder, status int, code string) idemhttp.Problem {
	t.Helper()
	wantStatus(t, w, status)
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type: got %q, want application/problem+json", ct)
	}
	var p idemhttp.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", w.Body, err)
	}
	if p.Status != status || p.Code != code || p.Type != idemhttp.ProblemTypeBase+code || p.Title == "" || p.Detail == "" {
		t.Errorf("problem: got %+v, want status %d, code %q, its type, a title and a detail", p, status, code)
	}
	return p
}

func wantRuns(t *testing.T, o *orders, want int64) {
	t.Helper()
	if got := o.runs.Load(); got != want {
		t.Errorf("handler runs: got %d, want %d", got, want)
	}
}

func testFirstRunsThenReplays(t *testing.T, s idem.Store) {
	cs := idemtest.NewCounting(s)
	o := &orders{}
	h := idemhttp.Middleware(cs)(o)
	key := rand.Text()

	first := send(t, h, req{key: key, body: `{"sku":"book"}`})
	wantStatus(t, first, http.StatusCreated)
	if got := first.Header().Get(idemhttp.ReplayedHeader); got != "" {
		t.Errorf("first response: %s = %q, want none", idemhttp.ReplayedHeader, got)
	}
	if got := first.Result().Cookies(); len(got) != 1 {
		t.Errorf("first response: cookies %v, want the session cookie", got)
	}
	if c := cs.Counts(); c.Writes() != 2 || c.Get != 0 {
		t.Errorf("first request: %+v, want 2 writes (claim, complete) and no read", c)
	}
	cs.Reset()

	for i := range 3 {
		again := send(t, h, req{key: key, body: `{"sku":"book"}`})
		wantStatus(t, again, http.StatusCreated)
		if !bytes.Equal(again.Body.Bytes(), first.Body.Bytes()) {
			t.Errorf("replay %d body: got %q, want %q", i, again.Body, first.Body)
		}
		if got := again.Header().Get(idemhttp.ReplayedHeader); got != "true" {
			t.Errorf("replay %d: %s = %q, want true", i, idemhttp.ReplayedHeader, got)
		}
		for _, k := range []string{"Content-Type", "Location", "Content-Length"} {
			if g, w := again.Header().Get(k), first.Header().Get(k); g != w {
				t.Errorf("replay %d: %s = %q, want %q", i, k, g, w)
			}
		}
		if g := again.Header().Values("X-Trace"); strings.Join(g, ",") != "a,b" {
			t.Errorf("replay %d: X-Trace = %q, want [a b]", i, g)
		}
		if g := again.Header().Get("Set-Cookie"); g != "" {
			t.Errorf("replay %d: Set-Cookie %q replayed; cookies must not be stored", i, g)
		}
	}
	wantRuns(t, o, 1)
	if c := cs.Counts(); c.Writes() != 3 || c.Get != 0 {
		t.Errorf("3 replays: %+v, want 1 write each and no read", c)
	}

	// The quoted (RFC 8941) form of the same key is the same key.
	quoted := send(t, h, req{key: `"` + key + `"`, body: `{"sku":"book"}`})
	if quoted.Header().Get(idemhttp.ReplayedHeader) != "true" {
		t.Errorf("quoted key: got status %d, not a replay", quoted.Code)
	}
	wantRuns(t, o, 1)
}

// testReplayOnTheWire compares a first response and its replay as bytes on
// a real connection, Date aside.
func testReplayOnTheWire(t *testing.T, s idem.Store) {
	o := &orders{}
	srv := httptest.NewServer(idemhttp.Middleware(s)(o))
	defer srv.Close()
	key := rand.Text()
	dump := func() []byte {
		r, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader("x=1"))
		r.Header.Set("Idempotency-Key", key)
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		resp.Header.Del("Date")
		resp.Header.Del("Set-Cookie")
		resp.Header.Del(idemhttp.ReplayedHeader)
		b, err := httputil.DumpResponse(resp, true)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first, second := dump(), dump()
	if !bytes.Equal(first, second) {
		t.Errorf("replay differs on the wire:\nfirst:\n%s\nreplay:\n%s", first, second)
	}
	wantRuns(t, o, 1)
}

func testMismatch(t *testing.T, s idem.Store) {
	o := &orders{}
	h := idemhttp.Middleware(s)(o)
	key := rand.Text()
	wantStatus(t, send(t, h, req{key: key, body: "a"}), http.StatusCreated)
	for _, q := range []req{
		{key: key, body: "b"},
		{key: key, body: "a", path: "/orders?dry_run=1"},
		{key: key, body: "a", path: "/refunds"},
		{key: key, body: "a", method: http.MethodPatch},
	} {
		p := wantProblem(t, send(t, h, q), http.StatusUnprocessableEntity, idemhttp.CodeMismatch)
		if !strings.Contains(p.Detail, key) {
			t.Errorf("%+v: detail %q does not name the key", q, p.Detail)
		}
	}
	wantRuns(t, o, 1)
}

func testInFlight409(t *testing.T, s idem.Store) {
	o := &orders{gate: make(chan struct{}), started: make(chan struct{})}
	h := idemhttp.Middleware(s)(o)
	key := rand.Text()
	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- send(t, h, req{key: key, body: "a"}) }()
	<-o.started

	dup := send(t, h, req{key: key, body: "a"})
	wantProblem(t, dup, http.StatusConflict, idemhttp.CodeInProgress)
	if got := dup.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After: got %q, want 1", got)
	}
	// A different request under the same key is a mismatch even in flight.
	wantProblem(t, send(t, h, req{key: key, body: "b"}), http.StatusUnprocessableEntity, idemhttp.CodeMismatch)

	close(o.gate)
	wantStatus(t, <-first, http.StatusCreated)
	if r := send(t, h, req{key: key, body: "a"}); r.Header().Get(idemhttp.ReplayedHeader) != "true" {
		t.Errorf("after the first finished: status %d, not a replay", r.Code)
	}
	wantRuns(t, o, 1)
}

// testInFlightWait: a duplicate that finds the key in progress waits for
// the first request and replays its response. The first request is held
// until the duplicate's claim has found the key in progress (its
// PutIfAbsent refused because the key exists), so the duplicate is on the
// waiting path, whatever the store's speed.
func testInFlightWait(t *testing.T, s idem.Store) {
	fs := idemtest.NewFaulty(s)
	seen := make(chan struct{}, 1)
	fs.On("PutIfAbsent", func(ctx context.Context, c idemtest.Call, send func() error) error {
		err := send()
		if ce := (*idem.ConflictError)(nil); errors.As(err, &ce) && ce.Exists {
			select {
			case seen <- struct{}{}:
			default:
			}
		}
		return err
	})
	o := &orders{gate: make(chan struct{}), started: make(chan struct{})}
	h := idemhttp.Middleware(fs, idemhttp.WithWait(30*time.Second))(o)
	key := rand.Text()
	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- send(t, h, req{key: key, body: "a"}) }()
	<-o.started
	dup := make(chan *httptest.ResponseRecorder)
	go func() { dup <- send(t, h, req{key: key, body: "a"}) }()
	<-seen // the duplicate saw the key in progress: it waits
	close(o.gate)
	f, d := <-first, <-dup
	wantStatus(t, d, http.StatusCreated)
	if !bytes.Equal(f.Body.Bytes(), d.Body.Bytes()) || d.Header().Get(idemhttp.ReplayedHeader) != "true" {
		t.Errorf("waiting duplicate: got %q (replayed %q), want a replay of %q", d.Body, d.Header().Get(idemhttp.ReplayedHeader), f.Body)
	}
	wantRuns(t, o, 1)
}

func testServerErrorsRelease(t *testing.T, s idem.Store) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			var runs atomic.Int64
			h := idemhttp.Middleware(s)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if runs.Add(1) == 1 {
					http.Error(w, "try again", status)
					return
				}
				w.WriteHeader(http.StatusCreated)
			}))
			key := rand.Text()
			first := send(t, h, req{key: key})
			wantStatus(t, first, status)
			if first.Body.String() != "try again\n" {
				t.Errorf("the %d went out as %q, want the handler's body", status, first.Body)
			}
			second := send(t, h, req{key: key})
			wantStatus(t, second, http.StatusCreated)
			if second.Header().Get(idemhttp.ReplayedHeader) != "" {
				t.Error("the retry after a release was marked replayed")
			}
			if got := runs.Load(); got != 2 {
				t.Errorf("handler runs: got %d, want 2 (the %d released the key)", got, status)
			}
		})
	}
}

func testPanicReleases(t *testing.T, s idem.Store) {
	var runs atomic.Int64
	h := idemhttp.Middleware(s)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			panic("boom")
		}
		w.WriteHeader(http.StatusCreated)
	}))
	key := rand.Text()
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the handler's panic to go on", r)
			}
		}()
		send(t, h, req{key: key})
	}()
	wantStatus(t, send(t, h, req{key: key}), http.StatusCreated)
	if got := runs.Load(); got != 2 {
		t.Errorf("handler runs: got %d, want 2 (the panic released the key)", got)
	}
}

func testClientErrorsKept(t *testing.T, s idem.Store) {
	var runs atomic.Int64
	h := idemhttp.Middleware(s)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		http.Error(w, "card declined", http.StatusPaymentRequired)
	}))
	key := rand.Text()
	wantStatus(t, send(t, h, req{key: key}), http.StatusPaymentRequired)
	again := send(t, h, req{key: key})
	wantStatus(t, again, http.StatusPaymentRequired)
	if again.Body.String() != "card declined\n" || again.Header().Get(idemhttp.ReplayedHeader) != "true" {
		t.Errorf("retry: got %q, replayed %q; want the stored 402", again.Body, again.Header().Get(idemhttp.ReplayedHeader))
	}
	if got := runs.Load(); got != 1 {
		t.Errorf("handler runs: got %d, want 1", got)
	}
}

func testScoped(t *testing.T, s idem.Store) {
	o := &orders{}
	h := idemhttp.Middleware(s)(o)
	key := rand.Text()
	alice := send(t, h, req{key: key, auth: "Bearer alice", body: "same"})
	mallory := send(t, h, req{key: key, auth: "Bearer mallory", body: "same"})
	anon := send(t, h, req{key: key, body: "same"})
	for _, w := range []*httptest.ResponseRecorder{alice, mallory, anon} {
		wantStatus(t, w, http.StatusCreated)
		if w.Header().Get(idemhttp.ReplayedHeader) != "" {
			t.Errorf("a different caller got a replay: %q", w.Body)
		}
	}
	if bytes.Equal(alice.Body.Bytes(), mallory.Body.Bytes()) {
		t.Error("mallory received alice's response")
	}
	again := send(t, h, req{key: key, auth: "Bearer alice", body: "same"})
	if !bytes.Equal(again.Body.Bytes(), alice.Body.Bytes()) {
		t.Errorf("alice's retry: got %q, want %q", again.Body, alice.Body)
	}
	wantRuns(t, o, 3)
}

func testConcurrentDuplicates(t *testing.T, s idem.Store) {
	o := &orders{}
	h := idemhttp.Middleware(s, idemhttp.WithWait(30*time.Second))(o)
	key := rand.Text()
	const n = 16
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Go(func() {
			w := send(t, h, req{key: key, body: "x"})
			if w.Code != http.StatusCreated {
				t.Errorf("duplicate %d: status %d: %s", i, w.Code, w.Body)
			}
			bodies[i] = w.Body.String()
		})
	}
	wg.Wait()
	for i := range bodies {
		if bodies[i] != bodies[0] {
			t.Errorf("duplicate %d got %q, duplicate 0 got %q", i, bodies[i], bodies[0])
		}
	}
	wantRuns(t, o, 1)
}

func testLargeResponse(t *testing.T, s idem.Store) {
	var runs atomic.Int64
	big := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	h := idemhttp.Middleware(s, idemhttp.WithMaxResponseBytes(4096))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		for i := 0; i < len(big); i += 1000 {
			w.Write(big[i:min(i+1000, len(big))])
		}
	}))
	key := rand.Text()
	first := send(t, h, req{key: key})
	wantStatus(t, first, http.StatusCreated)
	if !bytes.Equal(first.Body.Bytes(), big) {
		t.Errorf("first response: got %d bytes, want the handler's %d", first.Body.Len(), len(big))
	}
	again := send(t, h, req{key: key})
	wantStatus(t, again, http.StatusCreated)
	if again.Body.Len() != 0 || again.Header().Get("Idempotent-Body-Omitted") != "true" ||
		again.Header().Get(idemhttp.ReplayedHeader) != "true" || again.Header().Get("Content-Type") != "text/plain" {
		t.Errorf("replay of a large response: %d bytes, headers %v; want status and headers only, marked omitted", again.Body.Len(), again.Header())
	}
	if got := runs.Load(); got != 1 {
		t.Errorf("handler runs: got %d, want 1", got)
	}
}
