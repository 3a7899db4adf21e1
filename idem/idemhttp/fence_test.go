package idemhttp_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestHandlerFindsItsLease: the handler behind the middleware gets the
// claim's lease from its request's context, and so the fence for its own
// writes; a retry after the key was released gets a higher fence.
func TestHandlerFindsItsLease(t *testing.T) {
	var fences []int64
	status := http.StatusServiceUnavailable // the first answer releases the key
	h := idemhttp.Middleware(memstore.New())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l, ok := idem.LeaseFrom(r.Context())
		if !ok {
			t.Fatal("no lease in the handler's context")
		}
		fences = append(fences, l.Fence())
		w.WriteHeader(status)
	}))
	for range 2 {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{}`))
		r.Header.Set("Idempotency-Key", "order-1")
		h.ServeHTTP(httptest.NewRecorder(), r)
		status = http.StatusCreated
	}
	if len(fences) != 2 || fences[1] <= fences[0] {
		t.Errorf("fences %v: want two, the retry's above the released first's", fences)
	}
}

// TestWithCache: a retried request whose response this process stored is
// replayed from the cache with no store call, fingerprint still checked.
func TestWithCache(t *testing.T) {
	s := idemtest.NewCounting(memstore.New())
	c := idem.NewCache(100, 0)
	runs := 0
	h := idemhttp.Middleware(s, idemhttp.WithCache(c))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"id":"order-1"}`))
	}))
	post := func(body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body))
		r.Header.Set("Idempotency-Key", "order-1")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	post(`{"n":1}`)
	s.Reset()
	rec := post(`{"n":1}`)
	if rec.Code != http.StatusCreated || rec.Header().Get(idemhttp.ReplayedHeader) != "true" || rec.Body.String() != `{"id":"order-1"}` {
		t.Errorf("the retry: %d %q %q, want the stored 201 replayed", rec.Code, rec.Header().Get(idemhttp.ReplayedHeader), rec.Body.String())
	}
	if got := s.Counts(); got != (idemtest.Counts{}) || runs != 1 {
		t.Errorf("the retry made store calls %+v (handler ran %d times), want none and 1", got, runs)
	}
	if rec := post(`{"n":2}`); rec.Code != http.StatusUnprocessableEntity {
		t.Errorf("another body under the key: %d, want 422", rec.Code)
	}
}
