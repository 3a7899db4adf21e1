package idemhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/idemkit/idemkit/idem/idemhttp"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestEvents: WithEvents reports each request's key under Op "idemhttp":
// the first request's claim and completion, the retry's replay, and the
// release of a 5xx.
func TestEvents(t *testing.T) {
	var (
		mu  sync.Mutex
		got []event.Event
	)
	record := func(_ context.Context, e event.Event) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
	}
	status := http.StatusCreated
	h := idemhttp.Middleware(memstore.New(), idemhttp.WithEvents(record))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	}))
	send := func(key string) {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{}`))
		r.Header.Set("Idempotency-Key", key)
		r.Header.Set("Authorization", "Bearer client-1")
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	send("a")
	send("a")
	status = http.StatusServiceUnavailable
	send("b")
	var kinds []event.Kind
	for _, e := range got {
		kinds = append(kinds, e.Kind)
		if e.Op != "idemhttp" || !strings.HasPrefix(e.Key, idemhttp.DefaultKeyPrefix) {
			t.Errorf("%v: got op %q, key %q; want idemhttp and a stored key", e.Kind, e.Op, e.Key)
		}
	}
	want := []event.Kind{event.Claimed, event.Completed, event.Replayed, event.Claimed, event.Released}
	if !slices.Equal(kinds, want) {
		t.Errorf("got %v, want %v", kinds, want)
	}
}

// TestUnscoped: a request that names no caller (no Authorization header,
// the default scope) is reported as event.Unscoped before its claim, and
// with WithScopeRequired(true) refused with 401 before anything is stored.
func TestUnscoped(t *testing.T) {
	var kinds []event.Kind
	record := func(_ context.Context, e event.Event) { kinds = append(kinds, e.Kind) }
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	send := func(h http.Handler, auth string) int {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{}`))
		r.Header.Set("Idempotency-Key", "k")
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	served := idemhttp.Middleware(memstore.New(), idemhttp.WithEvents(record))(ok)
	if code := send(served, ""); code != http.StatusCreated {
		t.Fatalf("an unscoped request: %d, want it served", code)
	}
	if want := []event.Kind{event.Unscoped, event.Claimed, event.Completed}; !slices.Equal(kinds, want) {
		t.Errorf("got %v, want %v", kinds, want)
	}
	s := idemtest.NewCounting(memstore.New())
	strict := idemhttp.Middleware(s, idemhttp.WithScopeRequired(true))(ok)
	if code := send(strict, ""); code != http.StatusUnauthorized {
		t.Errorf("an unscoped request with WithScopeRequired: %d, want 401", code)
	}
	if got := s.Counts(); got != (idemtest.Counts{}) {
		t.Errorf("the refused request made store calls %+v", got)
	}
	if code := send(strict, "Bearer client-1"); code != http.StatusCreated {
		t.Errorf("a scoped request with WithScopeRequired: %d, want it served", code)
	}
}

// TestJSONBodyFingerprintByDefault: a retry whose client re-encoded its
// JSON body (other field order and spacing) is the same request by
// default, and a different body is not; a body that is not declared JSON
// is compared byte for byte.
func TestJSONBodyFingerprintByDefault(t *testing.T) {
	runs := 0
	h := idemhttp.Middleware(memstore.New())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		w.WriteHeader(http.StatusCreated)
	}))
	send := func(key, contentType, body string) int {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body))
		r.Header.Set("Idempotency-Key", key)
		r.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	for _, tc := range []struct {
		key, contentType, first, retry string
		want                           int
	}{
		{"json", "application/json; charset=utf-8", `{"a":1,"b":[1,2]}`, "{ \"b\": [1, 2],\n \"a\": 1 }", http.StatusCreated},
		{"suffix", "application/merge-patch+json", `{"a":1,"b":2}`, `{"b":2,"a":1}`, http.StatusCreated},
		{"changed", "application/json", `{"a":1}`, `{"a":2}`, http.StatusUnprocessableEntity},
		{"text", "text/plain", `{"a":1,"b":2}`, `{"b":2,"a":1}`, http.StatusUnprocessableEntity},
	} {
		if code := send(tc.key, tc.contentType, tc.first); code != http.StatusCreated {
			t.Fatalf("%s: first request %d", tc.key, code)
		}
		if code := send(tc.key, tc.contentType, tc.retry); code != tc.want {
			t.Errorf("%s: the retry got %d, want %d", tc.key, code, tc.want)
		}
	}
	if runs != 4 {
		t.Errorf("the handler ran %d times, want once per key (4)", runs)
	}
}
