package idemhttp

import (
	"net/http"
	"strconv"

	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// ErrInvalidKey means an Idempotency-Key value is malformed. See KeyError.
// idemlambda reports malformed keys with the same error.
var ErrInvalidKey = keyproto.ErrInvalidKey

// KeyError reports why an Idempotency-Key value was rejected. It matches
// ErrInvalidKey.
type KeyError = keyproto.KeyError

// Problem codes: the Code of every Problem the middleware writes. Each is
// also the fragment of the Problem's Type URI. idemlambda's APIGateway
// writes the same codes.
const (
	CodeKeyMissing    = keyproto.CodeKeyMissing    // 400: the key is required and absent
	CodeKeyInvalid    = keyproto.CodeKeyInvalid    // 400: malformed, empty, too long, or repeated
	CodeBodyTooLarge  = keyproto.CodeBodyTooLarge  // 413: the body is over WithMaxBodyBytes
	CodeBodyUnread    = keyproto.CodeBodyUnread    // 400: reading the body failed
	CodeFingerprint   = keyproto.CodeFingerprint   // 400: the fingerprint function failed
	CodeUnscoped      = keyproto.CodeUnscoped      // 401: the scope function failed
	CodeMismatch      = keyproto.CodeMismatch      // 422: same key, different request
	CodeInProgress    = keyproto.CodeInProgress    // 409: the first request is still running
	CodeStore         = keyproto.CodeStore         // 503: the store failed or timed out
	CodeCorruptRecord = keyproto.CodeCorruptRecord // 500: the stored response cannot be decoded
)

// ProblemTypeBase is the prefix of every Problem's Type; the Code follows.
const ProblemTypeBase = keyproto.ProblemTypeBase

// Problem is an RFC 9457 problem detail, the body of every error response
// the middleware writes itself (never of the handler's responses). Its
// RetryAfter, when positive, is already set as the Retry-After header when
// the problem handler runs.
type Problem = keyproto.Problem

// WriteProblem writes p as application/problem+json with status p.Status.
// It is the default problem handler.
func WriteProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	body := keyproto.Body(p)
	h := w.Header()
	h.Set("Content-Type", keyproto.ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	w.Write(body)
}
