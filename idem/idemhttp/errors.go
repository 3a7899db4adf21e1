package idemhttp

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// ErrInvalidKey: an Idempotency-Key value is malformed. See KeyError.
var ErrInvalidKey = errors.New("idemhttp: invalid idempotency key")

// KeyError reports why an Idempotency-Key value was rejected.
type KeyError struct {
	Reason string // what is wrong, for a person: "the key is empty"
}

// Error implements error.
func (e *KeyError) Error() string { return "idemhttp: invalid idempotency key: " + e.Reason }

// Is makes errors.Is(err, ErrInvalidKey) true.
func (e *KeyError) Is(target error) bool { return target == ErrInvalidKey }

// Problem codes: the Code of every Problem the middleware writes. Each is
// also the fragment of the Problem's Type URI.
const (
	CodeKeyMissing    = "idempotency-key-missing"    // 400: the key is required and absent
	CodeKeyInvalid    = "idempotency-key-invalid"    // 400: malformed, empty, too long, or repeated
	CodeBodyTooLarge  = "request-body-too-large"     // 413: the body is over WithMaxBodyBytes
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

// Problem is an RFC 9457 problem detail, the body of every error response
// the middleware writes itself (never of the handler's responses).
type Problem struct {
	Type   string `json:"type"`             // ProblemTypeBase + Code
	Title  string `json:"title"`            // short, fixed per Code
	Status int    `json:"status"`           // the HTTP status
	Detail string `json:"detail,omitempty"` // what happened to this request
	Code   string `json:"code"`             // one of the Code constants (an extension member)
	// Err is the underlying error, if any, for logs; it is not written.
	Err error `json:"-"`
}

func newProblem(status int, code, title, detail string, err error) *Problem {
	return &Problem{Type: ProblemTypeBase + code, Title: title, Status: status, Detail: detail, Code: code, Err: err}
}

// WriteProblem writes p as application/problem+json with status p.Status.
// It is the default problem handler.
func WriteProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	body, err := json.Marshal(p)
	if err != nil {
		body = []byte(`{"title":"internal error","status":500}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	w.Write(body)
}
