package idemhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestEvents: WithEvents reports each request's key under Op "idemhttp":
// the first request's claim and completion, the retry's replay, and the
// release of a 5xx.
func TestEvents(t *testing.T) {
	var (
		mu  sync.Mutex
		got []idem.Event
	)
	record := func(_ context.Context, e idem.Event) {
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
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	send("a")
	send("a")
	status = http.StatusServiceUnavailable
	send("b")
	var kinds []idem.EventKind
	for _, e := range got {
		kinds = append(kinds, e.Kind)
		if e.Op != "idemhttp" || !strings.HasPrefix(e.Key, idemhttp.DefaultKeyPrefix) {
			t.Errorf("%v: got op %q, key %q; want idemhttp and a stored key", e.Kind, e.Op, e.Key)
		}
	}
	want := []idem.EventKind{idem.EventClaimed, idem.EventCompleted, idem.EventReplayed, idem.EventClaimed, idem.EventReleased}
	if !slices.Equal(kinds, want) {
		t.Errorf("got %v, want %v", kinds, want)
	}
}
