package idemhttp

import (
	"net/http"
	"strings"

	"github.com/idemkit/idemkit/idem/internal/canon"

	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// ParseKey parses an Idempotency-Key field value. The IETF draft makes it
// an RFC 8941 sf-string ("8e03978e-40d5-43e8-bc93-6894a57f9324", quotes
// included); many clients send the key bare, as Stripe's do, so a bare
// token of visible ASCII characters other than '"', '\\', ',' and ';' is
// accepted too. Surrounding spaces and tabs are ignored. The key must be
// non-empty and at most maxLen bytes once unquoted. The error is a
// *KeyError, matching ErrInvalidKey, and says what is wrong.
func ParseKey(value string, maxLen int) (string, error) {
	return keyproto.ParseKey(value, maxLen)
}

// ScopeHeader returns a scope function that names the caller by the value
// of the request header name, hashed (SHA-256, the first 128 bits in hex)
// so that no credential is ever stored. Requests without the header share
// the empty scope. ScopeHeader("Authorization") is the default scope; use
// ScopeHeader("X-Api-Key") for API keys.
func ScopeHeader(name string) func(r *http.Request) (string, error) {
	name = http.CanonicalHeaderKey(name)
	return func(r *http.Request) (string, error) {
		vs := r.Header.Values(name)
		if len(vs) == 0 {
			return "", nil
		}
		return HashScope(strings.Join(vs, "\n")), nil
	}
}

// HashScope hashes a caller's credential or identity into a scope: the
// first 128 bits of its SHA-256, in hex.
func HashScope(s string) string { return keyproto.HashScope(s) }

// FingerprintRequest is the default fingerprint: the method, the escaped
// path, the raw query and the body, byte for byte, each prefixed with its
// length, so that no two requests share one. Headers are
// not compared; a handler that reads the body by its Content-Type or
// Content-Encoding can add them in a fingerprint function of its own.
func FingerprintRequest(r *http.Request, body []byte) ([]byte, error) {
	return keyproto.Fingerprint("raw", r.Method, r.URL.EscapedPath(), []byte(r.URL.RawQuery), body), nil
}

// FingerprintJSONBody is FingerprintRequest with a JSON body compared by
// its canonical form (the canonical JSON idem.Fingerprint uses), so a retry
// whose client re-encoded the body with other field order or spacing still
// matches. A body that is not JSON, or JSON whose canonical form is refused
// (data after the value, a repeated member, text that is not UTF-8), is
// compared byte for byte.
func FingerprintJSONBody(r *http.Request, body []byte) ([]byte, error) {
	fp, err := canon.JSON(body)
	if err != nil {
		return FingerprintRequest(r, body)
	}
	return keyproto.Fingerprint("json", r.Method, r.URL.EscapedPath(), []byte(r.URL.RawQuery), fp), nil
}

// storeKey is the key stored for a client key within a scope.
func storeKey(prefix, scope, key string) string {
	return keyproto.StoreKey(prefix, scope, key)
}
