package idemhttp_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
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
