package idemlambda

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
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
//     retry runs fn again; other responses are kept for the TTL.
//   - Keys are kept per caller (WithScope; by default the authorizer's
//     principalId, else a hash of the Authorization header).
//   - If the store fails before fn runs, the request gets 503.
//
// The error responses are application/problem+json bodies with the codes
// of idemhttp (ErrorResponse). Options: WithTTL, WithLease, WithWait,
// WithKeyPrefix, WithRequired, WithMethods, WithScope, WithValidation (of
// an events.APIGatewayProxyRequest), WithOnReplay, WithLogger. APIGateway
// rejects a nil store or handler and invalid options with an error
// matching idem.ErrInvalid.
func APIGateway(s idem.Store, fn func(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error), opts ...Option) (func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error), error) {
	if nilStore(s) || fn == nil {
		return nil, invalid("APIGateway needs a store and a handler")
	}
	cfg, err := newConfig(opts, reflect.TypeFor[events.APIGatewayProxyRequest]())
	if err != nil {
		return nil, err
	}
	scope := cfg.scope
	if scope == nil {
		scope = defaultScope
	}
	required := cfg.isRequired(false)

	return func(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
		if !cfg.methods[strings.ToUpper(req.HTTPMethod)] {
			return fn(ctx, req)
		}
		values := headerValues(req, idemhttp.DefaultHeader)
		switch {
		case len(values) == 0 && !required:
			return fn(ctx, req)
		case len(values) == 0:
			return respond(ErrNoKey)
		case len(values) > 1:
			return respond(&idemhttp.KeyError{Reason: fmt.Sprintf("the request has %d Idempotency-Key headers; send exactly one", len(values))})
		}
		key, err := idemhttp.ParseKey(values[0], idemhttp.DefaultMaxKeyLength)
		if err != nil {
			return respond(err)
		}
		who, err := scope(req)
		if err != nil {
			return problem(http.StatusUnauthorized, idemhttp.CodeUnscoped, "Caller not identified",
				"Idempotency keys are kept per caller, and this request's caller could not be identified."), nil
		}
		fp, err := cfg.fingerprint(req)
		if err != nil {
			return problem(http.StatusBadRequest, idemhttp.CodeFingerprint, "Request cannot be fingerprinted", err.Error()), nil
		}
		if fp == nil {
			fp = fingerprintRequest(req)
		}
		k := idem.Key(who, key)

		var ran, replayed bool
		resp, err := idem.Do(ctx, s, k, func(ctx context.Context) (events.APIGatewayProxyResponse, error) {
			ran = true
			resp, err := fn(ctx, req)
			if err == nil && idemhttp.ReleaseStatus(resp.StatusCode) {
				return resp, released{resp}
			}
			return resp, err
		}, cfg.idemOptions(ctx, fp, &replayed)...)
		var (
			rel  released
			perm *idem.PermanentError
		)
		switch {
		case errors.As(err, &rel):
			return rel.resp, nil
		case err == nil && replayed:
			cfg.replayed(ctx, k)
			return markReplayed(resp), nil
		case err == nil:
			return resp, nil
		case ran && resp.StatusCode != 0:
			// Done, but the response could not be stored.
			cfg.logger.ErrorContext(ctx, "idemlambda: storing a response", "key", cfg.prefix+k, "err", err)
			return resp, nil
		case ran, errors.As(err, &perm):
			return resp, err // fn's own error, or its stored permanent error
		}
		if r, ok := ErrorResponse(err); ok {
			return r, nil
		}
		if ctx.Err() == nil {
			r := problem(http.StatusServiceUnavailable, idemhttp.CodeStore, "Idempotency store unavailable",
				"The idempotency key could not be checked; the request was not processed. Retry with the same key.")
			r.Headers["Retry-After"] = "1"
			return r, nil
		}
		return events.APIGatewayProxyResponse{}, err
	}, nil
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

func respond(err error) (events.APIGatewayProxyResponse, error) {
	r, _ := ErrorResponse(err)
	return r, nil
}

// released carries a response that releases the key through idem.Do.
type released struct {
	resp events.APIGatewayProxyResponse
}

// Error implements error.
func (released) Error() string { return "idemlambda: response releases the key" }

// ErrorResponse maps an error of this package or of idem to the response
// the IETF draft prescribes, with an application/problem+json body:
// idem.ErrInProgress to 409 Conflict with Retry-After, idem.ErrMismatch to
// 422 Unprocessable Content, a malformed key (idemhttp.ErrInvalidKey) or a
// missing one (ErrNoKey) to 400. For other errors it returns false. Use it
// with Wrap on API Gateway events:
//
//	resp, err := wrapped(ctx, req)
//	if r, ok := idemlambda.ErrorResponse(err); ok {
//		return r, nil
//	}
func ErrorResponse(err error) (events.APIGatewayProxyResponse, bool) {
	var ip *idem.InProgressError
	switch {
	case err == nil:
		return events.APIGatewayProxyResponse{}, false
	case errors.As(err, &ip):
		wait := min(idemhttp.DefaultRetryAfter, ip.RetryAfter(time.Now()))
		secs := max(int64(math.Ceil(wait.Seconds())), 1)
		r := problem(http.StatusConflict, idemhttp.CodeInProgress, "Request in progress",
			fmt.Sprintf("A request with idempotency key %q is still being processed; retry after %d s.", ip.Key, secs))
		r.Headers["Retry-After"] = strconv.FormatInt(secs, 10)
		return r, true
	case errors.Is(err, idem.ErrMismatch):
		return problem(http.StatusUnprocessableEntity, idemhttp.CodeMismatch, "Idempotency key reused",
			"The idempotency key was used with a different request; use a new key for a new request."), true
	case errors.Is(err, idemhttp.ErrInvalidKey):
		var ke *idemhttp.KeyError
		reason := err.Error()
		if errors.As(err, &ke) {
			reason = ke.Reason
		}
		return problem(http.StatusBadRequest, idemhttp.CodeKeyInvalid, "Invalid idempotency key",
			fmt.Sprintf("The Idempotency-Key header is invalid: %s.", reason)), true
	case errors.Is(err, ErrNoKey):
		return problem(http.StatusBadRequest, idemhttp.CodeKeyMissing, "Idempotency key missing",
			"This request requires an Idempotency-Key header."), true
	}
	return events.APIGatewayProxyResponse{}, false
}

func problem(status int, code, title, detail string) events.APIGatewayProxyResponse {
	body, _ := json.Marshal(idemhttp.Problem{Type: idemhttp.ProblemTypeBase + code, Title: title, Status: status, Detail: detail, Code: code})
	return events.APIGatewayProxyResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/problem+json", "Cache-Control": "no-store"},
		Body:       string(body),
	}
}

func markReplayed(r events.APIGatewayProxyResponse) events.APIGatewayProxyResponse {
	h := make(map[string]string, len(r.Headers)+1)
	for k, v := range r.Headers {
		h[k] = v
	}
	h[idemhttp.ReplayedHeader] = "true"
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
		return idemhttp.HashScope("principal:" + p), nil
	}
	if vs := headerValues(req, "Authorization"); len(vs) > 0 {
		v := strings.Join(vs, "\n")
		if strings.HasPrefix(v, "principal:") || strings.HasPrefix(v, "authorization:") {
			v = "authorization:" + v
		}
		return idemhttp.HashScope(v), nil
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
	return idem.FingerprintParts([]byte("apigw"), []byte(strings.ToUpper(req.HTTPMethod)), []byte(req.Path),
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
		parts = append(parts, []byte(k), idem.FingerprintParts(vs...))
	}
	return idem.FingerprintParts(parts...)
}
