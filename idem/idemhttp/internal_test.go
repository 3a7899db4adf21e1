package idemhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestCrashTakeover: a server claimed the key and died before answering.
// A retry gets 409 while the dead server's lease is live, then takes the
// key over and runs the handler.
// On synctest's fake clock, so the lease passes exactly.
func TestCrashTakeover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memstore.New()
		ctx := context.Background()
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("a"))
		fp, _ := FingerprintRequest(r, []byte("a"))
		_, _, err := idem.Claim(ctx, s, storeKey(DefaultKeyPrefix, "", "k"), idem.WithLease(200*time.Millisecond), idem.WithFingerprint(fp))
		if err != nil {
			t.Fatal(err)
		}
		runs := 0
		h := Middleware(s)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs++
			w.WriteHeader(http.StatusCreated)
		}))
		send := func() int {
			r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("a"))
			r.Header.Set("Idempotency-Key", "k")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code
		}
		if got := send(); got != http.StatusConflict {
			t.Errorf("while the dead server's lease is live: %d, want 409", got)
		}
		time.Sleep(250 * time.Millisecond)
		if got := send(); got != http.StatusCreated || runs != 1 {
			t.Errorf("after the lease: %d with %d runs, want 201 from a takeover", got, runs)
		}
	})
}

func TestCorruptRecord(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	r := httptest.NewRequest(http.MethodPost, "/orders", nil)
	fp, _ := FingerprintRequest(r, nil)
	l, _, err := idem.Claim(ctx, s, storeKey(DefaultKeyPrefix, "", "k"), idem.WithFingerprint(fp))
	if err != nil {
		t.Fatal(err)
	}
	l.Complete(ctx, []byte("not a response"))
	h := Middleware(s)(http.NotFoundHandler())
	r.Header.Set("Idempotency-Key", "k")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var p Problem
	json.Unmarshal(w.Body.Bytes(), &p)
	if w.Code != http.StatusInternalServerError || p.Code != CodeCorruptRecord {
		t.Errorf("corrupt record: %d %+v, want 500 %s", w.Code, p, CodeCorruptRecord)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, r := range []response{
		{Status: 200},
		{Status: 201, Header: http.Header{"Location": {"/o/1"}, "X-Multi": {"a", "", "c"}}, Body: []byte(`{"id":1}`)},
		{Status: 204, Header: http.Header{"Etag": {`"v"`}}},
		{Status: 500, Body: bytes.Repeat([]byte{0, 0xff}, 1000), BodyOmitted: false},
		{Status: 202, Header: http.Header{"Content-Type": {"text/plain"}}, BodyOmitted: true},
	} {
		got, err := decodeResponse(encodeResponse(r))
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip: got %+v, want %+v", got, r)
		}
	}
	// Headers are sorted, so equal responses encode equally.
	a := response{Status: 200, Header: http.Header{"A": {"1"}, "B": {"2"}, "C": {"3"}}}
	for range 10 {
		if !bytes.Equal(encodeResponse(a), encodeResponse(a)) {
			t.Fatal("encoding is not deterministic")
		}
	}
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(encodeResponse(response{Status: 201, Header: http.Header{"Location": {"/o/1"}}, Body: []byte("x")}))
	f.Add(encodeResponse(response{Status: 200, BodyOmitted: true}))
	f.Add([]byte("ih1"))
	f.Add([]byte("ih1\xc8\x01\x00\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeResponse(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to a form that decodes equal.
		again, err := decodeResponse(encodeResponse(r))
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", r, err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip: got %+v, want %+v", again, r)
		}
	})
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"abc", `"abc"`, `"a\"b"`, "", `"`, "a b", `"a";x=1`, "\t k \t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		key, err := ParseKey(in, 64)
		if err != nil {
			return
		}
		if key == "" || len(key) > 64 {
			t.Fatalf("ParseKey(%q) accepted %q", in, key)
		}
		for _, c := range []byte(key) {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("ParseKey(%q) accepted %q with byte %#x", in, key, c)
			}
		}
		// The quoted form of an accepted key parses back to it.
		q := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
		if back, err := ParseKey(q, 64); err != nil || back != key {
			t.Fatalf("ParseKey(%q) = %q, %v; want %q", q, back, err, key)
		}
	})
}
