package keyproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/idemkit/idemkit/idem"
)

// Problem codes: the Code of every Problem the adapters write. Each is
// also the fragment of the Problem's Type URI.
const (
	CodeKeyMissing    = "idempotency-key-missing"    // 400: the key is required and absent
	CodeKeyInvalid    = "idempotency-key-invalid"    // 400: malformed, empty, too long, or repeated
	CodeBodyTooLarge  = "request-body-too-large"     // 413: the body is over the limit
	CodeBodyUnread    = "request-body-unreadable"    // 400: reading the body failed
	CodeFingerprint   = "request-fingerprint"        // 400: the fingerprint function failed
	CodeUnscoped      = "caller-unidentified"        // 401: the scope function failed
	CodeMismatch      = "idempotency-key-reused"     // 422: same key, different request
	CodeInProgress    = "request-in-progress"        // 409: the first request is still running
	CodeStore         = "idempotency-store-failure"  // 503: the store failed or timed out
	CodeCorruptRecord = "idempotency-record-corrupt" // 500: the stored response cannot be decoded
)

// ProblemTypeBase is the prefix of every Problem's Type; the Code follows.
const ProblemTypeBase = "https://github.com/idemkit/idemkit/blob/main/idem/idemhttp/README.md#"

// ContentType is the media type of a Problem body.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem detail, the body of every error response
// the adapters write themselves (never of the handler's responses).
type Problem struct {
	Type   string `json:"type"`             // ProblemTypeBase + Code
	Title  string `json:"title"`            // short, fixed per Code
	Status int    `json:"status"`           // the HTTP status
	Detail string `json:"detail,omitempty"` // what happened to this request
	Code   string `json:"code"`             // one of the Code constants (an extension member)
	// RetryAfter, if positive, is the Retry-After header sent with the
	// problem, in whole seconds; it is not written in the body.
	RetryAfter int64 `json:"-"`
	// Err is the underlying error, if any, for logs; it is not written.
	Err error `json:"-"`
}

// New returns a Problem of code with status, title and detail.
func New(status int, code, title, detail string, err error) *Problem {
	return &Problem{Type: ProblemTypeBase + code, Title: title, Status: status, Detail: detail, Code: code, Err: err}
}

// Body is p's JSON encoding.
func Body(p *Problem) []byte {
	body, err := json.Marshal(p)
	if err != nil {
		return []byte(`{"title":"internal error","status":500}`)
	}
	return body
}

// MissingKey is the problem of a request without the key it requires.
func MissingKey(header string) *Problem {
	return New(http.StatusBadRequest, CodeKeyMissing, "Idempotency key missing",
		fmt.Sprintf("This request requires an %s header.", header), nil)
}

// RepeatedKey is the problem of a request with n key headers.
func RepeatedKey(n int, header string) *Problem {
	return New(http.StatusBadRequest, CodeKeyInvalid, "Invalid idempotency key",
		fmt.Sprintf("The request has %d %s headers; send exactly one.", n, header),
		&KeyError{Reason: fmt.Sprintf("the request has %d %s headers; send exactly one", n, header)})
}

// InvalidKey is the problem of a malformed key; err matches ErrInvalidKey.
func InvalidKey(header string, err error) *Problem {
	reason := err.Error()
	var ke *KeyError
	if errors.As(err, &ke) {
		reason = ke.Reason
	}
	return New(http.StatusBadRequest, CodeKeyInvalid, "Invalid idempotency key",
		fmt.Sprintf("The %s header is invalid: %s.", header, reason), err)
}

// Unscoped is the problem of a request whose caller cannot be named.
func Unscoped(err error) *Problem {
	return New(http.StatusUnauthorized, CodeUnscoped, "Caller not identified",
		"Idempotency keys are kept per caller, and this request's caller could not be identified.", err)
}

// Unfingerprinted is the problem of a request whose fingerprint failed.
func Unfingerprinted(err error) *Problem {
	return New(http.StatusBadRequest, CodeFingerprint, "Request cannot be fingerprinted",
		fmt.Sprintf("The request could not be fingerprinted: %v.", err), err)
}

// BodyTooLarge is the problem of a request body over limit bytes.
func BodyTooLarge(limit int64) *Problem {
	return New(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "Request body too large",
		fmt.Sprintf("Requests with an idempotency key may carry at most %d bytes.", limit), nil)
}

// BodyUnread is the problem of a request body that could not be read.
func BodyUnread(err error) *Problem {
	return New(http.StatusBadRequest, CodeBodyUnread, "Request body unreadable",
		"The request body could not be read.", err)
}

// Corrupt is the problem of a stored record that holds no readable
// response for key.
func Corrupt(key string, err error) *Problem {
	return New(http.StatusInternalServerError, CodeCorruptRecord, "Stored response unreadable",
		fmt.Sprintf("The record of idempotency key %q cannot be read.", key), err)
}

// StoreUnavailable is the problem of a store that failed before the
// handler ran: 503, retry in a second.
func StoreUnavailable(err error) *Problem {
	p := New(http.StatusServiceUnavailable, CodeStore, "Idempotency store unavailable",
		"The idempotency key could not be checked; the request was not processed. Retry with the same key.", err)
	p.RetryAfter = 1
	return p
}

// ForError maps an error of a claim on the client's key (key, "" if not
// known) to its problem, or returns nil for an error it does not know:
//
//   - idem.ErrInProgress: 409 with Retry-After, retryAfter capped by the
//     time left on the holder's lease and rounded up to whole seconds;
//   - idem.ErrMismatch: 422;
//   - ErrInvalidKey, idem.ErrInvalid (a key the store cannot hold): 400;
//   - idem.ErrCorrupt: 500.
func ForError(key string, err error, retryAfter time.Duration, now time.Time) *Problem {
	var ip *idem.InProgressError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ip):
		return inProgress(key, max(ip.LeaseUntil.Sub(now), 0), retryAfter, err)
	case errors.Is(err, idem.ErrMismatch):
		return New(http.StatusUnprocessableEntity, CodeMismatch, "Idempotency key reused",
			fmt.Sprintf("The idempotency key%s was used with a different request; use a new key for a new request.", quoted(key)), err)
	case errors.Is(err, ErrInvalidKey):
		return InvalidKey(Header, err)
	case errors.Is(err, idem.ErrInvalid):
		return New(http.StatusBadRequest, CodeKeyInvalid, "Invalid idempotency key",
			fmt.Sprintf("The idempotency key%s cannot be stored: %v.", quoted(key), err), err)
	case errors.Is(err, idem.ErrCorrupt):
		return Corrupt(key, err)
	}
	return nil
}

func inProgress(key string, left, retryAfter time.Duration, err error) *Problem {
	secs := max(int64(math.Ceil(min(retryAfter, left).Seconds())), 1)
	p := New(http.StatusConflict, CodeInProgress, "Request in progress",
		fmt.Sprintf("A request with the idempotency key%s is still being processed; retry after %d s.", quoted(key), secs), err)
	p.RetryAfter = secs
	return p
}

func quoted(key string) string {
	if key == "" {
		return ""
	}
	return fmt.Sprintf(" %q", key)
}
