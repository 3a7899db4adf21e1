package idemhttp_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idemkit/idemkit/idem/idemhttp"
	"github.com/idemkit/idemkit/idem/memstore"
)

type fpRequest struct{ method, target, body string }

func fingerprint(t *testing.T, fp func(*http.Request, []byte) ([]byte, error), q fpRequest) []byte {
	t.Helper()
	r := httptest.NewRequest(q.method, q.target, strings.NewReader(q.body))
	got, err := fp(r, []byte(q.body))
	if err != nil {
		t.Fatalf("%+v: %v", q, err)
	}
	return got
}

// TestFingerprintRequestDistinct: requests that differ in method, escaped
// path, raw query or body never share a fingerprint, whichever way their
// bytes line up, with either fingerprint function.
func TestFingerprintRequestDistinct(t *testing.T) {
	tests := []struct {
		name string
		a, b fpRequest
	}{
		{"method", fpRequest{"POST", "/orders", ""}, fpRequest{"PATCH", "/orders", ""}},
		{"path and query boundary", fpRequest{"POST", "/orders?a", ""}, fpRequest{"POST", "/ordersa", ""}},
		{"query and body boundary", fpRequest{"POST", "/o?a=1", "b"}, fpRequest{"POST", "/o?a=1b", ""}},
		{"escaped slash", fpRequest{"POST", "/a%2Fb", ""}, fpRequest{"POST", "/a/b", ""}},
		{"escaped ampersand in a value", fpRequest{"POST", "/o?amount=100%26to%3Dbob", ""}, fpRequest{"POST", "/o?amount=100&to=bob", ""}},
		{"query order", fpRequest{"POST", "/o?a=1&a=2", ""}, fpRequest{"POST", "/o?a=2&a=1", ""}},
		{"body", fpRequest{"POST", "/o", `{"amount":100}`}, fpRequest{"POST", "/o", `{"amount":101}`}},
		{"JSON body with a closing brace after it", fpRequest{"POST", "/o", `{"amount":100}`}, fpRequest{"POST", "/o", `{"amount":100}}`}},
		{"JSON body with a repeated member", fpRequest{"POST", "/o", `{"to":"bob"}`}, fpRequest{"POST", "/o", `{"to":"eve","to":"bob"}`}},
		{"JSON body with lone surrogates", fpRequest{"POST", "/o", `{"to":"\ud800"}`}, fpRequest{"POST", "/o", `{"to":"\udbff"}`}},
	}
	for _, fn := range []struct {
		name string
		fp   func(*http.Request, []byte) ([]byte, error)
	}{{"FingerprintRequest", idemhttp.FingerprintRequest}, {"FingerprintJSONBody", idemhttp.FingerprintJSONBody}} {
		for _, tc := range tests {
			t.Run(fn.name+"/"+tc.name, func(t *testing.T) {
				if string(fingerprint(t, fn.fp, tc.a)) == string(fingerprint(t, fn.fp, tc.b)) {
					t.Errorf("%+v and %+v got the same fingerprint", tc.a, tc.b)
				}
			})
		}
	}
}

// TestFingerprintJSONBodyRefused: a JSON body FingerprintJSON cannot tell
// apart from another is compared byte for byte. A retry whose body has a
// stray closing brace used to share the canonical fingerprint of the
// valid body, and got the first request's response instead of 422.
func TestFingerprintJSONBodyRefused(t *testing.T) {
	for name, bodies := range map[string][2]string{
		"closing brace after the value": {`{"sku":"book","qty":1}`, `{"sku":"book","qty":1}}`},
		"repeated member":               {`{"sku":"book","qty":1}`, `{"sku":"book","qty":5,"qty":1}`},
		"lone surrogates":               {`{"sku":"\ud800"}`, `{"sku":"\udbff"}`},
	} {
		t.Run(name, func(t *testing.T) {
			o := &orders{}
			h := idemhttp.Middleware(memstore.New(), idemhttp.WithFingerprint(idemhttp.FingerprintJSONBody))(o)
			key := rand.Text()
			wantStatus(t, send(t, h, req{key: key, body: bodies[0]}), http.StatusCreated)
			wantProblem(t, send(t, h, req{key: key, body: bodies[1]}), http.StatusUnprocessableEntity, idemhttp.CodeMismatch)
			again := send(t, h, req{key: key, body: bodies[0]})
			if again.Header().Get(idemhttp.ReplayedHeader) != "true" {
				t.Errorf("the first body again: status %d, want a replay", again.Code)
			}
			wantRuns(t, o, 1)
		})
	}
}

// TestFingerprintRequestStable: the default fingerprints are what they
// have always been, so responses stored earlier still replay.
func TestFingerprintRequestStable(t *testing.T) {
	q := fpRequest{"POST", "/orders/a%2Fb?x=1&y=%26", `{ "qty": 1, "sku": "book" }`}
	for _, tc := range []struct {
		name string
		fp   func(*http.Request, []byte) ([]byte, error)
		want string
	}{
		{"FingerprintRequest", idemhttp.FingerprintRequest, "e5cfe113bb780671631437273aaa6bf95ac513172ba37e7e82545a7970fad716"},
		{"FingerprintJSONBody", idemhttp.FingerprintJSONBody, "6b4d1dbc5aa54d50d30bb06abdbbdcf3fc090519f3e7b6c9ece359dd370079ad"},
	} {
		if got := hex.EncodeToString(fingerprint(t, tc.fp, q)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}
