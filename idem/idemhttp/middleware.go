package idemhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/idemkit/idemkit/idem"
)

// cleanupTimeout bounds the writes made after the handler returns
// (complete, release). They run detached from the request's context, so a
// client that hangs up does not leave a claim behind.
const cleanupTimeout = 10 * time.Second

// omittedHeader marks a replay of a response whose body was too large to
// store.
const omittedHeader = "Idempotent-Body-Omitted"

// New returns middleware that makes requests carrying an Idempotency-Key
// safe to retry, with keys kept in s. It rejects a nil store and invalid
// options with an error matching idem.ErrInvalid. See the package
// documentation for what it does with each request.
func New(s idem.Store, opts ...Option) (func(http.Handler) http.Handler, error) {
	if nilStore(s) {
		return nil, fmt.Errorf("idemhttp: the store is nil: %w", idem.ErrInvalid)
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		return &handler{store: s, cfg: cfg, next: next}
	}, nil
}

// Middleware is New for options known to be valid, for use in expressions:
// it panics if New would return an error.
func Middleware(s idem.Store, opts ...Option) func(http.Handler) http.Handler {
	mw, err := New(s, opts...)
	if err != nil {
		panic(err)
	}
	return mw
}

// nilStore reports whether s is nil, or a nil pointer that would panic at
// the first request.
func nilStore(s idem.Store) bool {
	if s == nil {
		return true
	}
	v := reflect.ValueOf(s)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

type handler struct {
	store idem.Store
	cfg   *config
	next  http.Handler
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := h.cfg
	if !cfg.methods[r.Method] {
		h.next.ServeHTTP(w, r)
		return
	}
	values := r.Header.Values(cfg.header)
	switch {
	case len(values) == 0 && !cfg.required:
		h.next.ServeHTTP(w, r)
		return
	case len(values) == 0:
		h.fail(w, r, newProblem(http.StatusBadRequest, CodeKeyMissing, "Idempotency key missing",
			fmt.Sprintf("%s %s requires an %s header.", r.Method, r.URL.Path, cfg.header), nil))
		return
	case len(values) > 1:
		h.fail(w, r, newProblem(http.StatusBadRequest, CodeKeyInvalid, "Invalid idempotency key",
			fmt.Sprintf("The request has %d %s headers; send exactly one.", len(values), cfg.header), nil))
		return
	}
	key, err := ParseKey(values[0], cfg.maxKey)
	if err != nil {
		var ke *KeyError
		errors.As(err, &ke)
		h.fail(w, r, newProblem(http.StatusBadRequest, CodeKeyInvalid, "Invalid idempotency key",
			fmt.Sprintf("The %s header is invalid: %s.", cfg.header, ke.Reason), err))
		return
	}

	body, p := h.readBody(r)
	if p != nil {
		h.fail(w, r, p)
		return
	}
	scope, err := cfg.scope(r)
	if err != nil {
		h.fail(w, r, newProblem(http.StatusUnauthorized, CodeUnscoped, "Caller not identified",
			"Idempotency keys are kept per caller, and this request's caller could not be identified.", err))
		return
	}
	fp, err := cfg.fingerprint(r, body)
	if err != nil {
		h.fail(w, r, newProblem(http.StatusBadRequest, CodeFingerprint, "Request cannot be fingerprinted",
			fmt.Sprintf("The request could not be fingerprinted: %v.", err), err))
		return
	}

	ctx := r.Context()
	lease, rec, err := idem.Claim(ctx, h.store, storeKey(cfg.prefix, scope, key),
		idem.WithTTL(cfg.ttl), idem.WithLease(cfg.lease), idem.WithWait(cfg.wait), idem.WithFingerprint(fp))
	switch {
	case err != nil:
		h.claimFailed(w, r, key, err)
	case rec != nil:
		h.replay(w, r, key, rec)
	default:
		h.run(w, r, lease, body)
	}
}

// readBody reads the whole body, bounded by WithMaxBodyBytes.
func (h *handler) readBody(r *http.Request) ([]byte, *Problem) {
	limit := h.cfg.maxBody
	tooLarge := func() *Problem {
		return newProblem(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "Request body too large",
			fmt.Sprintf("Requests with an idempotency key may carry at most %d bytes.", limit), nil)
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge()
	case err != nil:
		return nil, newProblem(http.StatusBadRequest, CodeBodyUnread, "Request body unreadable",
			"The request body could not be read.", err)
	case int64(len(body)) > limit:
		return nil, tooLarge()
	}
	return body, nil
}

func (h *handler) claimFailed(w http.ResponseWriter, r *http.Request, key string, err error) {
	var ip *idem.InProgressError
	switch {
	case errors.As(err, &ip):
		wait := min(h.cfg.retryAfter, ip.RetryAfter(time.Now()))
		secs := max(int64(math.Ceil(wait.Seconds())), 1)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		h.fail(w, r, newProblem(http.StatusConflict, CodeInProgress, "Request in progress",
			fmt.Sprintf("A request with idempotency key %q is still being processed; retry after %d s.", key, secs), err))
	case errors.Is(err, idem.ErrMismatch):
		h.fail(w, r, newProblem(http.StatusUnprocessableEntity, CodeMismatch, "Idempotency key reused",
			fmt.Sprintf("Idempotency key %q was used with a different request; use a new key for a new request.", key), err))
	case errors.Is(err, idem.ErrCorrupt):
		h.fail(w, r, newProblem(http.StatusInternalServerError, CodeCorruptRecord, "Stored response unreadable",
			fmt.Sprintf("The record of idempotency key %q cannot be read.", key), err))
	case errors.Is(err, idem.ErrInvalid):
		h.fail(w, r, newProblem(http.StatusBadRequest, CodeKeyInvalid, "Invalid idempotency key",
			fmt.Sprintf("Idempotency key %q cannot be stored: %v.", key, err), err))
	case r.Context().Err() != nil:
		// The client has gone: nobody is listening for an answer.
	default:
		w.Header().Set("Retry-After", "1")
		h.fail(w, r, newProblem(http.StatusServiceUnavailable, CodeStore, "Idempotency store unavailable",
			"The idempotency key could not be checked; the request was not processed. Retry with the same key.", err))
	}
}

func (h *handler) replay(w http.ResponseWriter, r *http.Request, key string, rec *idem.Record) {
	if rec.Error != nil {
		// Not written by this middleware: some other user of the prefix.
		h.fail(w, r, newProblem(http.StatusInternalServerError, CodeCorruptRecord, "Stored response unreadable",
			fmt.Sprintf("The record of idempotency key %q holds no response.", key), fmt.Errorf("stored error %q", rec.Error.Message)))
		return
	}
	resp, err := decodeResponse(rec.Result)
	if err != nil {
		h.fail(w, r, newProblem(http.StatusInternalServerError, CodeCorruptRecord, "Stored response unreadable",
			fmt.Sprintf("The record of idempotency key %q cannot be read.", key), &idem.CorruptError{Key: key, Err: err}))
		return
	}
	hdr := w.Header()
	for k, vs := range resp.Header {
		hdr[k] = vs
	}
	hdr.Set(ReplayedHeader, "true")
	if resp.BodyOmitted {
		hdr.Set(omittedHeader, "true")
	}
	if bodyAllowed(resp.Status) {
		hdr.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	}
	w.WriteHeader(resp.Status)
	if len(resp.Body) > 0 {
		w.Write(resp.Body)
	}
}

// run runs the handler under lease, then stores or releases its response.
func (h *handler) run(w http.ResponseWriter, r *http.Request, lease *idem.Lease, body []byte) {
	ctx, stop := lease.KeepAlive(r.Context(), 0)
	defer stop()

	r2 := r.WithContext(ctx)
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	rec := &recorder{w: w, header: make(http.Header), max: h.cfg.maxResponse}

	cctx, ccancel := context.WithTimeout(context.WithoutCancel(r.Context()), cleanupTimeout)
	defer ccancel()
	panicked := true
	defer func() {
		if panicked {
			stop()
			if err := lease.Release(cctx); err != nil {
				h.cfg.logger.ErrorContext(ctx, "idemhttp: releasing the key after a panic", "key", lease.Key(), "err", err)
			}
			// The panic goes on to net/http, which logs it and drops the
			// connection.
		}
	}()
	h.next.ServeHTTP(rec, r2)
	panicked = false
	stop()

	status := rec.statusCode()
	switch {
	case h.cfg.release(status):
		if err := lease.Release(cctx); err != nil {
			h.cfg.logger.ErrorContext(ctx, "idemhttp: releasing the key", "key", lease.Key(), "status", status, "err", err)
		}
		if rec.passthrough {
			return // already sent
		}
	case rec.passthrough:
		// Already sent, too large to store: complete with the status and
		// headers, so a retry cannot run the handler a second time.
		resp := response{Status: status, Header: h.kept(rec.header), BodyOmitted: true}
		if err := lease.Complete(cctx, encodeResponse(resp)); err != nil {
			h.cfg.logger.ErrorContext(ctx, "idemhttp: storing a response", "key", lease.Key(), "status", status, "err", err)
		}
		return
	default:
		rec.settle()
		resp := response{Status: status, Header: h.kept(rec.header), Body: rec.body.Bytes()}
		if err := lease.Complete(cctx, encodeResponse(resp)); err != nil {
			// The work is done and the client gets its answer, but a retry
			// after the lease passes would run the handler again.
			h.cfg.logger.ErrorContext(ctx, "idemhttp: storing a response", "key", lease.Key(), "status", status, "err", err)
		}
	}
	rec.flushTo(w)
}

func (h *handler) kept(hdr http.Header) http.Header {
	out := make(http.Header, len(hdr))
	for k, vs := range hdr {
		if len(vs) > 0 && h.cfg.keepHeader(k) {
			out[k] = append([]string(nil), vs...)
		}
	}
	return out
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, p *Problem) {
	h.cfg.problem(w, r, p)
}
