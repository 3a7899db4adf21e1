// Package keyproto is the Idempotency-Key protocol (IETF httpapi draft "The
// Idempotency-Key HTTP Header Field") as idemhttp and idemlambda speak it:
// the header and its parsing, the scope of a key, the parts of a request
// fingerprint, which responses release a key, and how every idem error maps
// to a status and an RFC 9457 problem body. Both adapters use it, so a
// client sees the same answers from a net/http server and from a Lambda
// function behind API Gateway.
package keyproto

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/idemkit/idemkit/idem/internal/canon"

	"github.com/idemkit/idemkit/idem"
)

// Defaults both adapters share.
const (
	// Header is the request header that carries the key.
	Header = "Idempotency-Key"
	// ReplayedHeader is set to "true" on every replayed response.
	ReplayedHeader = "Idempotent-Replayed"
	// MaxKeyLength is the longest key accepted, in bytes (as Stripe).
	MaxKeyLength = 255
	// DefaultRetention is how long a completed response is kept.
	DefaultRetention = 24 * time.Hour
	// DefaultLease is how long a claim is exclusive without a heartbeat.
	DefaultLease = 30 * time.Second
	// MinLease is the shortest lease accepted: a shorter one would leave its
	// heartbeat (every third of the lease) no time to reach the store before
	// half the lease has passed.
	MinLease = 100 * time.Millisecond
	// DefaultRetryAfter is the Retry-After sent with a 409 while the first
	// request is still running.
	DefaultRetryAfter = time.Second
)

// DefaultMethods are the methods a key applies to unless configured
// otherwise: POST and PATCH, as the IETF draft suggests.
func DefaultMethods() map[string]bool {
	return map[string]bool{http.MethodPost: true, http.MethodPatch: true}
}

// Methods is the set of methods a key applies to. Names are compared
// without regard to case (stored upper case); each must be an RFC 9110
// token, and the list must not be empty.
func Methods(methods []string) (map[string]bool, error) {
	if len(methods) == 0 {
		return nil, fmt.Errorf("no methods")
	}
	set := make(map[string]bool, len(methods))
	for _, m := range methods {
		if !IsToken(m) {
			return nil, fmt.Errorf("method %q is not a valid method", m)
		}
		set[strings.ToUpper(m)] = true
	}
	return set, nil
}

// Applies reports whether a request with method is subject to its key.
func Applies(methods map[string]bool, method string) bool {
	return methods[strings.ToUpper(method)]
}

// CheckLease says what is wrong with a configured lease, or returns "".
// Both adapters reject a lease below MinLease, zero included.
func CheckLease(lease time.Duration) string {
	if lease < MinLease {
		return fmt.Sprintf("lease %v is below MinLease (%v)", lease, MinLease)
	}
	return ""
}

// CheckRetention says what is wrong with a configured retention, or
// returns "".
func CheckRetention(retention time.Duration) string {
	if retention <= 0 {
		return fmt.Sprintf("retention %v is not positive", retention)
	}
	return ""
}

// ReleaseStatus is the release rule: server errors (5xx) and 429 Too Many
// Requests mean the request was not, or not fully, processed, so the key
// is released for a retry. Every other response is the final answer for
// the key, 4xx included, and is replayed.
func ReleaseStatus(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests
}

// HashScope hashes a caller's credential or identity into a scope: the
// first 128 bits of its SHA-256, in hex, so that no credential is stored.
func HashScope(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// StoreKey is the key stored for a client key within a scope.
// idem.JoinKey escapes both parts, so no scope and key pair can collide
// with another.
func StoreKey(prefix, scope, key string) string {
	return prefix + idem.JoinKey(scope, key)
}

// Fingerprint is a request fingerprint: kind (which adapter and form),
// method and path, then the adapter's other parts, each length-prefixed
// (canon.Parts) so that no two requests share one.
func Fingerprint(kind, method, path string, parts ...[]byte) []byte {
	all := make([][]byte, 0, 3+len(parts))
	all = append(all, []byte(kind), []byte(method), []byte(path))
	return canon.Parts(append(all, parts...)...)
}

// IsToken reports whether s is a non-empty RFC 9110 token.
func IsToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, notTokenChar)
}

func notTokenChar(r rune) bool {
	if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
		return false
	}
	return !strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}
