package idemhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
	"github.com/idemkit/idemkit/idem/kernel"
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
	if keyproto.NilStore(s) {
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

type handler struct {
	store idem.Store
	cfg   *config
	next  http.Handler
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !keyproto.Applies(h.cfg.methods, r.Method) {
		h.next.ServeHTTP(w, r)
		return
	}
	key, ok, p := keyproto.FromValues(r.Header.Values(h.cfg.header), h.cfg.header, h.cfg.maxKey)
	switch {
	case p != nil:
		h.fail(w, r, p)
		return
	case !ok && h.cfg.required:
		h.fail(w, r, keyproto.MissingKey(h.cfg.header))
		return
	case !ok:
		h.next.ServeHTTP(w, r)
		return
	}
	body, fp, skey, p := h.identify(r, key)
	if p != nil {
		h.fail(w, r, p)
		return
	}
	lease, result, err := idem.Claim(r.Context(), h.store, skey, idem.WithRetention(h.cfg.retention),
		idem.WithLease(h.cfg.lease), idem.WithWait(h.cfg.wait), idem.WithFingerprint(fp), idem.WithCache(h.cfg.cache), h.cfg.events)
	switch {
	case err != nil:
		h.claimFailed(w, r, key, err)
	case lease == nil:
		h.replay(w, r, key, result)
	default:
		h.run(w, r, lease, body)
	}
}

// identify reads the body of a request with key and returns it with the
// request's fingerprint and the key to store, or the problem that stops it.
func (h *handler) identify(r *http.Request, key string) (body, fp []byte, skey string, p *Problem) {
	body, p = h.readBody(r)
	if p != nil {
		return nil, nil, "", p
	}
	scope, err := h.cfg.scope(r)
	switch {
	case err != nil:
		return nil, nil, "", keyproto.Unscoped(err)
	case scope == "" && h.cfg.needScope:
		return nil, nil, "", keyproto.Unscoped(errors.New("the request names no caller, and WithScopeRequired refuses an empty scope"))
	case scope == "" && h.cfg.onEvent != nil:
		h.cfg.onEvent(r.Context(), event.Event{Kind: event.Unscoped, Key: storeKey(h.cfg.prefix, scope, key)})
	}
	fp, err = h.cfg.fingerprint(r, body)
	if err != nil {
		return nil, nil, "", keyproto.Unfingerprinted(err)
	}
	return body, fp, storeKey(h.cfg.prefix, scope, key), nil
}

// readBody reads the whole body, bounded by WithMaxBodyBytes.
func (h *handler) readBody(r *http.Request) ([]byte, *Problem) {
	limit := h.cfg.maxBody
	if r.ContentLength > limit {
		return nil, keyproto.BodyTooLarge(limit)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, keyproto.BodyTooLarge(limit)
	case err != nil:
		return nil, keyproto.BodyUnread(err)
	case int64(len(body)) > limit:
		return nil, keyproto.BodyTooLarge(limit)
	}
	return body, nil
}

func (h *handler) claimFailed(w http.ResponseWriter, r *http.Request, key string, err error) {
	var perm *idem.PermanentError
	if errors.As(err, &perm) && perm.Replayed {
		// Not written by this middleware: some other user of the prefix.
		h.fail(w, r, keyproto.New(http.StatusInternalServerError, CodeCorruptRecord, "Stored response unreadable",
			fmt.Sprintf("The record of idempotency key %q holds no response.", key), err))
		return
	}
	switch p := keyproto.ForError(key, err, h.cfg.retryAfter, time.Now()); {
	case p != nil:
		h.fail(w, r, p)
	case r.Context().Err() != nil:
		// The client has gone: nobody is listening for an answer.
	default:
		h.fail(w, r, keyproto.StoreUnavailable(err))
	}
}

func (h *handler) replay(w http.ResponseWriter, r *http.Request, key string, result []byte) {
	resp, err := decodeResponse(result)
	if err != nil {
		h.fail(w, r, keyproto.Corrupt(key, kernel.Corrupt(key, err)))
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
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(p.RetryAfter, 10))
	}
	h.cfg.problem(w, r, p)
}
