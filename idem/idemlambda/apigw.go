package idemlambda

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idemkit/idemkit/idem/internal/canon"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// APIGateway returns a handler for API Gateway REST API proxy events with
// the semantics of idemhttp's middleware (the IETF Idempotency-Key draft):
//
//   - POST and PATCH (WithMethods) with an Idempotency-Key header run fn
//     once per key and caller; retries get the stored response, with the
//     header Idempotent-Replayed: true.
//   - Without the header the request passes through, or gets 400 with
//     WithRequired(true). A malformed key gets 400.
//   - The same key with a different request (method, path, query string,
//     body; or WithValidation) gets 422; a retry while the first is running
//     gets 409 with Retry-After (or waits, with WithWait).
//   - A 5xx or 429 response from fn, or an error, releases the key so a
//     retry runs fn again; other responses are kept for the retention.
//   - Keys are kept per caller (WithScope; by default the authorizer's
//     principalId, else a hash of the Authorization header).
//   - If the store fails before fn runs, the request gets 503.
//
// The error responses are application/problem+json bodies with the codes
// of idemhttp (ErrorResponse). Options: every Option, WithMethods,
// WithScope, WithLogger and WithValidation (of an
// events.APIGatewayProxyRequest). APIGateway rejects a nil store or handler
// and invalid options with an error matching idem.ErrInvalid.
func APIGateway(s idem.Store, fn func(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error), opts ...APIGatewayOption) (func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error), error) {
	if keyproto.NilStore(s) || fn == nil {
		return nil, invalid("APIGateway needs a store and a handler")
	}
	cfg, v, err := newAPIConfig(opts)
	if err != nil {
		return nil, err
	}
	cfg.named("idemlambda.APIGateway")
	h := &apiHandler{store: s, cfg: cfg, validation: v, required: cfg.isRequired(false), fn: fn}
	return h.handle, nil
}

// apiHandler is APIGateway's handler.
type apiHandler struct {
	store      idem.Store
	cfg        *apiConfig
	validation validation[events.APIGatewayProxyRequest]
	required   bool
	fn         func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error)
}

func (h *apiHandler) handle(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	if !keyproto.Applies(h.cfg.methods, req.HTTPMethod) {
		return h.fn(ctx, req)
	}
	key, ok, p := keyproto.FromValues(headerValues(req, keyproto.Header), keyproto.Header, keyproto.MaxKeyLength)
	switch {
	case p != nil:
		return problem(p), nil
	case !ok && h.required:
		return problem(keyproto.MissingKey(keyproto.Header)), nil
	case !ok:
		return h.fn(ctx, req)
	}
	k, fp, p := h.identify(req, key)
	if p != nil {
		return problem(p), nil
	}
	return h.run(ctx, req, key, k, fp)
}

// identify returns the key to claim for the client's key and the request's
// fingerprint, or the problem that stops the request.
func (h *apiHandler) identify(req events.APIGatewayProxyRequest, key string) (string, []byte, *keyproto.Problem) {
	who, err := h.cfg.scope(req)
	if err != nil {
		return "", nil, keyproto.Unscoped(err)
	}
	fp, err := h.validation.fingerprint(req)
	if err != nil {
		return "", nil, keyproto.Unfingerprinted(err)
	}
	if fp == nil {
		fp = fingerprintRequest(req)
	}
	return keyproto.StoreKey("", who, key), fp, nil
}

// run runs fn once for the scoped key k, or replays its stored response.
func (h *apiHandler) run(ctx context.Context, req events.APIGatewayProxyRequest, key, k string, fp []byte) (events.APIGatewayProxyResponse, error) {
	ran := false
	resp, err := idem.Do(ctx, h.store, k, func(ctx context.Context) (events.APIGatewayProxyResponse, error) {
		ran = true
		resp, err := h.fn(ctx, req)
		if err == nil && keyproto.ReleaseStatus(resp.StatusCode) {
			return resp, released{resp}
		}
		return resp, err
	}, h.cfg.idemOptions(ctx, fp)...)
	var rel released
	switch {
	case errors.As(err, &rel):
		return rel.resp, nil
	case replayed(ran, err):
		h.cfg.replayed(ctx, k)
		if err != nil {
			return resp, err // the stored permanent error
		}
		return markReplayed(resp), nil
	case err == nil:
		return resp, nil
	case ran && resp.StatusCode != 0:
		// Done, but the response could not be stored.
		h.cfg.logger.ErrorContext(ctx, "idemlambda: storing a response", "key", h.cfg.prefix+k, "err", err)
		return resp, nil
	case ran:
		return resp, err // fn's own error
	}
	return h.claimFailed(ctx, key, err)
}

// claimFailed answers a request whose key could not be claimed.
func (h *apiHandler) claimFailed(ctx context.Context, key string, err error) (events.APIGatewayProxyResponse, error) {
	if p := keyproto.ForError(key, err, keyproto.DefaultRetryAfter, time.Now()); p != nil {
		return problem(p), nil
	}
	if ctx.Err() == nil {
		return problem(keyproto.StoreUnavailable(err)), nil
	}
	return events.APIGatewayProxyResponse{}, err
}

// ErrorResponseV2 is ErrorResponse for API Gateway HTTP APIs (payload
// format 2.0), for handlers of events.APIGatewayV2HTTPRequest wrapped with
// Wrap.
func ErrorResponseV2(err error) (events.APIGatewayV2HTTPResponse, bool) {
	r, ok := ErrorResponse(err)
	if !ok {
		return events.APIGatewayV2HTTPResponse{}, false
	}
	return events.APIGatewayV2HTTPResponse{StatusCode: r.StatusCode, Headers: r.Headers, Body: r.Body}, true
}

// released carries a response that releases the key through idem.Do.
type released struct {
	resp events.APIGatewayProxyResponse
}

// Error implements error.
func (released) Error() string { return "idemlambda: response releases the key" }

// ErrorResponse maps an error of this package or of idem to the response
// the IETF draft prescribes, with an application/problem+json body, as
// APIGateway and idemhttp answer: idem.ErrInProgress to 409 Conflict with
// Retry-After, idem.ErrMismatch to 422 Unprocessable Content, a malformed
// key (idemhttp.ErrInvalidKey, what idemhttp.ParseKey returns) or a
// missing one (ErrNoKey) to 400, a key the store cannot hold
// (idem.ErrInvalid) to 400, a corrupt record (idem.ErrCorrupt) to 500.
// For other errors it returns false. Use it with Wrap on API Gateway
// events:
//
//	resp, err := wrapped(ctx, req)
//	if r, ok := idemlambda.ErrorResponse(err); ok {
//		return r, nil
//	}
func ErrorResponse(err error) (events.APIGatewayProxyResponse, bool) {
	if errors.Is(err, ErrNoKey) {
		return problem(keyproto.MissingKey(keyproto.Header)), true
	}
	if p := keyproto.ForError("", err, keyproto.DefaultRetryAfter, time.Now()); p != nil {
		return problem(p), true
	}
	return events.APIGatewayProxyResponse{}, false
}

// problem is the response that carries p.
func problem(p *keyproto.Problem) events.APIGatewayProxyResponse {
	h := map[string]string{"Content-Type": keyproto.ContentType, "Cache-Control": "no-store"}
	if p.RetryAfter > 0 {
		h["Retry-After"] = strconv.FormatInt(p.RetryAfter, 10)
	}
	return events.APIGatewayProxyResponse{StatusCode: p.Status, Headers: h, Body: string(keyproto.Body(p))}
}

func markReplayed(r events.APIGatewayProxyResponse) events.APIGatewayProxyResponse {
	h := make(map[string]string, len(r.Headers)+1)
	for k, v := range r.Headers {
		h[k] = v
	}
	h[keyproto.ReplayedHeader] = "true"
	r.Headers = h
	return r
}

// headerValues returns the values of the header name, matched without
// regard to case, from the event's single- and multi-value headers.
func headerValues(req events.APIGatewayProxyRequest, name string) []string {
	// Names are compared without case; when an event carries the header
	// under several casings, the first name in byte order wins, so a retry
	// of the same event always reads the same value.
	for _, k := range slices.Sorted(maps.Keys(req.MultiValueHeaders)) {
		if vs := req.MultiValueHeaders[k]; strings.EqualFold(k, name) && len(vs) > 0 {
			return vs
		}
	}
	for _, k := range slices.Sorted(maps.Keys(req.Headers)) {
		if strings.EqualFold(k, name) {
			return []string{req.Headers[k]}
		}
	}
	return nil
}

// defaultScope is the authorizer's principalId, else a hash of the
// Authorization header, else the shared empty scope. A principal is hashed
// as "principal:" and its ID; an Authorization value is hashed as it is,
// unless it starts with "principal:" or "authorization:", which is hashed
// behind "authorization:". So no header value can share a principal's
// scope, nor another value's.
func defaultScope(req events.APIGatewayProxyRequest) (string, error) {
	if p, ok := req.RequestContext.Authorizer["principalId"].(string); ok && p != "" {
		return keyproto.HashScope("principal:" + p), nil
	}
	if vs := headerValues(req, "Authorization"); len(vs) > 0 {
		v := strings.Join(vs, "\n")
		if strings.HasPrefix(v, "principal:") || strings.HasPrefix(v, "authorization:") {
			v = "authorization:" + v
		}
		return keyproto.HashScope(v), nil
	}
	return "", nil
}

// fingerprintRequest covers the method, the path, the query string
// parameters (by name; each name's values in the order sent) and the body,
// every part length-prefixed, so that no two requests share one.
func fingerprintRequest(req events.APIGatewayProxyRequest) []byte {
	single := make(map[string][]string, len(req.QueryStringParameters))
	for k, v := range req.QueryStringParameters {
		single[k] = []string{v}
	}
	b64 := "text"
	if req.IsBase64Encoded {
		b64 = "base64"
	}
	return keyproto.Fingerprint("apigw", strings.ToUpper(req.HTTPMethod), req.Path,
		queryPart(req.MultiValueQueryStringParameters), queryPart(single), []byte(b64), []byte(req.Body))
}

// queryPart fingerprints query string parameters: each name, sorted, with
// the fingerprint of its values in their order.
func queryPart(params map[string][]string) []byte {
	parts := make([][]byte, 0, 2*len(params))
	for _, k := range slices.Sorted(maps.Keys(params)) {
		vs := make([][]byte, len(params[k]))
		for i, v := range params[k] {
			vs[i] = []byte(v)
		}
		parts = append(parts, []byte(k), canon.Parts(vs...))
	}
	return canon.Parts(parts...)
}
