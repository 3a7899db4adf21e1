package idemhttp_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

func TestMiddleware(t *testing.T) {
	runSuite(t, func(t *testing.T) idem.Store { return memstore.New() })
}

func TestPassThrough(t *testing.T) {
	cs := idemtest.NewCounting(memstore.New())
	o := &orders{}
	h := idemhttp.Middleware(cs)(o)
	key := rand.Text()
	for _, q := range []req{
		{method: http.MethodGet, key: key},    // not a covered method, key or not
		{method: http.MethodPut, key: key},    // PUT is idempotent by itself
		{method: http.MethodDelete, key: key}, //
		{method: http.MethodPost},             // no key: passes through, twice
		{method: http.MethodPost},
		{method: http.MethodPatch},
	} {
		wantStatus(t, send(t, h, q), http.StatusCreated)
	}
	wantRuns(t, o, 6)
	if c := cs.Counts(); c.Total() != 0 {
		t.Errorf("store calls: %+v, want none", c)
	}

	// WithMethods narrows and widens the set.
	o2 := &orders{}
	h2 := idemhttp.Middleware(memstore.New(), idemhttp.WithMethods(http.MethodPut))(o2)
	send(t, h2, req{method: http.MethodPut, key: key})
	send(t, h2, req{method: http.MethodPut, key: key})
	send(t, h2, req{method: http.MethodPost, key: key})
	wantRuns(t, o2, 2) // one PUT replayed, the POST passed through

	// Names match without regard to case, as in idemlambda.
	o3 := &orders{}
	h3 := idemhttp.Middleware(memstore.New(), idemhttp.WithMethods("put"))(o3)
	send(t, h3, req{method: http.MethodPut, key: key})
	send(t, h3, req{method: http.MethodPut, key: key})
	wantRuns(t, o3, 1) // the second PUT replayed
}

func TestRequired(t *testing.T) {
	o := &orders{}
	h := idemhttp.Middleware(memstore.New(), idemhttp.WithRequired(true))(o)
	p := wantProblem(t, send(t, h, req{}), http.StatusBadRequest, idemhttp.CodeKeyMissing)
	if !strings.Contains(p.Detail, "Idempotency-Key") {
		t.Errorf("detail %q does not name the header", p.Detail)
	}
	wantStatus(t, send(t, h, req{method: http.MethodGet}), http.StatusCreated) // GET is not covered
	wantRuns(t, o, 1)
}

func TestInvalidKeys(t *testing.T) {
	tests := []struct {
		name  string
		value []string
	}{
		{"empty", []string{""}},
		{"blank", []string{"   "}},
		{"empty quoted", []string{`""`}},
		{"too long", []string{strings.Repeat("k", 256)}},
		{"too long quoted", []string{`"` + strings.Repeat("k", 256) + `"`}},
		{"space inside", []string{"a b"}},
		{"comma (a list)", []string{"a,b"}},
		{"quoted list", []string{`"a", "b"`}},
		{"parameters", []string{`"a";v=1`}},
		{"unterminated", []string{`"abc`}},
		{"bad escape", []string{`"a\b"`}},
		{"control character", []string{"a\x01b"}},
		{"non-ASCII", []string{"clé"}},
		{"two headers", []string{"a", "b"}},
	}
	o := &orders{}
	h := idemhttp.Middleware(memstore.New())(o)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/orders", nil)
			r.Header["Idempotency-Key"] = tc.value
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			wantProblem(t, w, http.StatusBadRequest, idemhttp.CodeKeyInvalid)
		})
	}
	wantRuns(t, o, 0)

	// The longest key accepted, and WithMaxKeyLength.
	wantStatus(t, send(t, h, req{key: strings.Repeat("k", 255)}), http.StatusCreated)
	h8 := idemhttp.Middleware(memstore.New(), idemhttp.WithMaxKeyLength(8))(o)
	wantProblem(t, send(t, h8, req{key: "123456789"}), http.StatusBadRequest, idemhttp.CodeKeyInvalid)
	wantStatus(t, send(t, h8, req{key: "12345678"}), http.StatusCreated)
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"abc", "abc"},
		{"  abc\t", "abc"},
		{`"abc"`, "abc"},
		{`"a b"`, "a b"},
		{`"a\"b\\c"`, `a"b\c`},
		{"8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{"ord_42:retry/1=+~", "ord_42:retry/1=+~"},
	}
	for _, tc := range tests {
		got, err := idemhttp.ParseKey(tc.in, 255)
		if err != nil || got != tc.want {
			t.Errorf("ParseKey(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", `""`, `"a`, `a"`, `"a"b`, "a;b", `a\b`, "\x7f", `"\x00"`} {
		if _, err := idemhttp.ParseKey(in, 255); !errors.Is(err, idemhttp.ErrInvalidKey) {
			t.Errorf("ParseKey(%q): got %v, want ErrInvalidKey", in, err)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	var seen atomic.Value
	h := idemhttp.Middleware(memstore.New(), idemhttp.WithMaxBodyBytes(10))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen.Store(string(b))
		w.WriteHeader(http.StatusCreated)
	}))
	wantStatus(t, send(t, h, req{key: rand.Text(), body: "0123456789"}), http.StatusCreated)
	if got := seen.Load(); got != "0123456789" {
		t.Errorf("handler read %q, want the whole body", got)
	}
	seen.Store("")

	// Declared too large.
	wantProblem(t, send(t, h, req{key: rand.Text(), body: "0123456789a"}), http.StatusRequestEntityTooLarge, idemhttp.CodeBodyTooLarge)
	// Too large without a declared length (chunked).
	r := httptest.NewRequest(http.MethodPost, "/orders", io.MultiReader(strings.NewReader("012345"), strings.NewReader("6789ab")))
	r.ContentLength = -1
	r.Header.Set("Idempotency-Key", rand.Text())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	wantProblem(t, w, http.StatusRequestEntityTooLarge, idemhttp.CodeBodyTooLarge)
	if got := seen.Load(); got != "" {
		t.Errorf("the handler ran on a body over the limit (read %q)", got)
	}
	// A body that fails to read.
	r = httptest.NewRequest(http.MethodPost, "/orders", io.MultiReader(strings.NewReader("01"), errReader{}))
	r.ContentLength = -1
	r.Header.Set("Idempotency-Key", rand.Text())
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	wantProblem(t, w, http.StatusBadRequest, idemhttp.CodeBodyUnread)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestScopeAndFingerprintErrors(t *testing.T) {
	o := &orders{}
	h := idemhttp.Middleware(memstore.New(), idemhttp.WithScope(func(r *http.Request) (string, error) {
		if r.Header.Get("X-User") == "" {
			return "", errors.New("no user")
		}
		return r.Header.Get("X-User"), nil
	}))(o)
	wantProblem(t, send(t, h, req{key: "k"}), http.StatusUnauthorized, idemhttp.CodeUnscoped)

	h = idemhttp.Middleware(memstore.New(), idemhttp.WithFingerprint(func(r *http.Request, body []byte) ([]byte, error) {
		return nil, errors.New("unsupported content type")
	}))(o)
	wantProblem(t, send(t, h, req{key: "k"}), http.StatusBadRequest, idemhttp.CodeFingerprint)
	wantRuns(t, o, 0)
}

func TestFingerprintJSONBody(t *testing.T) {
	o := &orders{}
	h := idemhttp.Middleware(memstore.New(), idemhttp.WithFingerprint(idemhttp.FingerprintJSONBody))(o)
	key := rand.Text()
	wantStatus(t, send(t, h, req{key: key, body: `{"sku":"book","qty":1}`}), http.StatusCreated)
	again := send(t, h, req{key: key, body: "{ \"qty\": 1,\n \"sku\": \"book\" }"})
	if again.Header().Get(idemhttp.ReplayedHeader) != "true" {
		t.Errorf("re-encoded JSON body: status %d, want a replay", again.Code)
	}
	wantProblem(t, send(t, h, req{key: key, body: `{"sku":"book","qty":2}`}), http.StatusUnprocessableEntity, idemhttp.CodeMismatch)
	// Not JSON: byte for byte.
	k2 := rand.Text()
	send(t, h, req{key: k2, body: "a=1"})
	wantProblem(t, send(t, h, req{key: k2, body: "a=2"}), http.StatusUnprocessableEntity, idemhttp.CodeMismatch)
	wantRuns(t, o, 2)
}

var errDown = errors.New("store unreachable")

func TestStoreDown(t *testing.T) {
	f := idemtest.NewFaulty(memstore.New())
	f.On("PutIfAbsent", idemtest.Fail(errDown))
	f.On("CompareAndSwap", idemtest.Fail(errDown))
	o := &orders{}
	h := idemhttp.Middleware(f)(o)
	w := send(t, h, req{key: "k"})
	wantProblem(t, w, http.StatusServiceUnavailable, idemhttp.CodeStore)
	if w.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	wantRuns(t, o, 0)
}

// TestLeaseLost: the store stops accepting lease extensions while the
// handler runs; once the lease has passed, the handler's context is
// cancelled with a cause matching idem.ErrLeaseLost, so it can stop
// before a second owner duplicates its work. On synctest's fake clock: a
// 150ms lease is extended every 50ms, so the third failed extension, at
// 150ms, finds the lease passed.
func TestLeaseLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 150 * time.Millisecond
		f := idemtest.NewFaulty(memstore.New())
		type lost struct {
			cause error
			after time.Duration
		}
		got := make(chan lost, 1)
		h := idemhttp.Middleware(f, idemhttp.WithLease(lease))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.On("CompareAndSwap", idemtest.Fail(errDown)) // extensions fail from now on
			start := time.Now()
			select {
			case <-r.Context().Done():
				got <- lost{context.Cause(r.Context()), time.Since(start)}
			case <-time.After(5 * time.Second):
				got <- lost{nil, time.Since(start)}
			}
			f.On("CompareAndSwap", nil)
			w.WriteHeader(http.StatusCreated)
		}))
		send(t, h, req{key: "k"})
		l := <-got
		if !errors.Is(l.cause, idem.ErrLeaseLost) {
			t.Errorf("handler context cause: got %v, want idem.ErrLeaseLost", l.cause)
		}
		if l.after != lease {
			t.Errorf("handler context cancelled after %v, want %v (when the lease passed)", l.after, lease)
		}
	})
}

// TestLeaseExtended: a handler that runs for several leases keeps its key;
// duplicates meanwhile get 409, never a second run. On synctest's fake
// clock: a 300ms lease is extended every 100ms (a third of it), so a
// handler answering at 850ms makes exactly 8 extensions (100ms ... 800ms)
// and the completion.
func TestLeaseExtended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idemtest.NewCounting(memstore.New())
		o := &orders{gate: make(chan struct{}), started: make(chan struct{})}
		h := idemhttp.Middleware(s, idemhttp.WithLease(300*time.Millisecond))(o)
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() { done <- send(t, h, req{key: "k"}) }()
		<-o.started
		for range 4 {
			time.Sleep(200 * time.Millisecond) // two leases pass: only extensions keep the key
			wantProblem(t, send(t, h, req{key: "k"}), http.StatusConflict, idemhttp.CodeInProgress)
		}
		time.Sleep(50 * time.Millisecond)
		close(o.gate)
		wantStatus(t, <-done, http.StatusCreated)
		wantRuns(t, o, 1)
		if n := s.Counts().CompareAndSwap; n != 9 {
			t.Errorf("got %d CompareAndSwaps, want 8 extensions and the completion", n)
		}
	})
}

func TestContentTypeSniffed(t *testing.T) {
	h := idemhttp.Middleware(memstore.New())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html><body>ok</body></html>"))
	}))
	first := send(t, h, req{key: "k"})
	again := send(t, h, req{key: "k"})
	if a, b := first.Header().Get("Content-Type"), again.Header().Get("Content-Type"); a == "" || a != b {
		t.Errorf("Content-Type: first %q, replay %q; want the same sniffed type", a, b)
	}
}

func TestNoContentReplay(t *testing.T) {
	var runs atomic.Int64
	h := idemhttp.Middleware(memstore.New())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.Header().Set("ETag", `"v2"`)
		w.WriteHeader(http.StatusNoContent)
	}))
	send(t, h, req{key: "k", method: http.MethodPatch})
	again := send(t, h, req{key: "k", method: http.MethodPatch})
	wantStatus(t, again, http.StatusNoContent)
	if again.Header().Get("ETag") != `"v2"` || again.Body.Len() != 0 || runs.Load() != 1 {
		t.Errorf("204 replay: ETag %q, body %q, runs %d", again.Header().Get("ETag"), again.Body, runs.Load())
	}
}

func TestProblemHandler(t *testing.T) {
	var got *idemhttp.Problem
	h := idemhttp.Middleware(memstore.New(), idemhttp.WithRequired(true),
		idemhttp.WithProblemHandler(func(w http.ResponseWriter, r *http.Request, p *idemhttp.Problem) {
			got = p
			w.WriteHeader(p.Status)
		}))(&orders{})
	wantStatus(t, send(t, h, req{}), http.StatusBadRequest)
	if got == nil || got.Code != idemhttp.CodeKeyMissing {
		t.Errorf("problem handler got %+v", got)
	}
}

// TestNewRejectsBadOptions: a nil store (untyped, or a nil pointer that
// would panic at the first request) and every invalid option are rejected
// by New with an error matching idem.ErrInvalid, and make Middleware
// panic with that error.
func TestNewRejectsBadOptions(t *testing.T) {
	s := memstore.New()
	var nilMem *memstore.Store
	tests := []struct {
		name  string
		store idem.Store
		opts  []idemhttp.Option
	}{
		{"nil store", nil, nil},
		{"nil pointer store", nilMem, nil},
		{"ttl", s, []idemhttp.Option{idemhttp.WithRetention(0)}},
		{"lease", s, []idemhttp.Option{idemhttp.WithLease(-time.Second)}},
		{"lease zero", s, []idemhttp.Option{idemhttp.WithLease(0)}},
		{"lease too short for a heartbeat", s, []idemhttp.Option{idemhttp.WithLease(2 * time.Nanosecond)}},
		{"lease below the minimum", s, []idemhttp.Option{idemhttp.WithLease(idemhttp.MinLease - 1)}},
		{"wait", s, []idemhttp.Option{idemhttp.WithWait(-1)}},
		{"retry-after", s, []idemhttp.Option{idemhttp.WithRetryAfter(time.Millisecond)}},
		{"key length", s, []idemhttp.Option{idemhttp.WithMaxKeyLength(0)}},
		{"body", s, []idemhttp.Option{idemhttp.WithMaxBodyBytes(-1)}},
		{"response", s, []idemhttp.Option{idemhttp.WithMaxResponseBytes(-1)}},
		{"header", s, []idemhttp.Option{idemhttp.WithHeader("Bad Header")}},
		{"no methods", s, []idemhttp.Option{idemhttp.WithMethods()}},
		{"bad method", s, []idemhttp.Option{idemhttp.WithMethods("PO ST")}},
		{"nil scope", s, []idemhttp.Option{idemhttp.WithScope(nil)}},
		{"nil fingerprint", s, []idemhttp.Option{idemhttp.WithFingerprint(nil)}},
		{"nil logger", s, []idemhttp.Option{idemhttp.WithLogger(nil)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := idemhttp.New(tc.store, tc.opts...); !errors.Is(err, idem.ErrInvalid) {
				t.Errorf("New: got %v, want an error matching idem.ErrInvalid", err)
			}
			defer func() {
				if err, _ := recover().(error); !errors.Is(err, idem.ErrInvalid) {
					t.Errorf("Middleware: panicked with %v, want an error matching idem.ErrInvalid", err)
				}
			}()
			idemhttp.Middleware(tc.store, tc.opts...)
		})
	}
	if _, err := idemhttp.New(s, idemhttp.WithLease(idemhttp.MinLease)); err != nil {
		t.Errorf("WithLease(MinLease): %v", err)
	}
}
