package idemhttp

import (
	"context"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// Defaults for the options below.
const (
	// DefaultHeader is the request header that carries the key.
	DefaultHeader = keyproto.Header
	// DefaultKeyPrefix prefixes every key the middleware stores.
	DefaultKeyPrefix = "idemhttp/"
	// DefaultMaxKeyLength is the longest key accepted, in bytes (as Stripe).
	DefaultMaxKeyLength = keyproto.MaxKeyLength
	// DefaultMaxBodyBytes is the largest request body accepted.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxResponseBytes is the largest response body stored for
	// replay. Its stored form fits in one DynamoDB item (400 KB).
	DefaultMaxResponseBytes = 256 << 10
	// DefaultRetryAfter is the Retry-After sent with a 409 while the first
	// request is still running.
	DefaultRetryAfter = keyproto.DefaultRetryAfter
	// DefaultRetention is how long a completed response is kept and
	// replayed (WithRetention).
	DefaultRetention = keyproto.DefaultRetention
	// DefaultLease is how long a request's claim stays exclusive without
	// news from its server (WithLease).
	DefaultLease = keyproto.DefaultLease
	// MinLease is the shortest lease WithLease accepts (idemlambda's is the
	// same): a shorter one would leave its heartbeat (every third of the
	// lease) no time to reach the store before half the lease has passed.
	MinLease = keyproto.MinLease
)

// ReplayedHeader is set to "true" on every replayed response.
const ReplayedHeader = keyproto.ReplayedHeader

// Option configures New and Middleware, which accept the same options and
// use every one of them.
type Option func(*config)

type config struct {
	header      string
	methods     map[string]bool
	required    bool
	retention   time.Duration
	lease       time.Duration
	wait        time.Duration
	retryAfter  time.Duration
	maxKey      int
	maxBody     int64
	maxResponse int
	prefix      string
	scope       func(*http.Request) (string, error)
	fingerprint func(r *http.Request, body []byte) ([]byte, error)
	keepHeader  func(name string) bool
	release     func(status int) bool
	problem     func(http.ResponseWriter, *http.Request, *Problem)
	logger      *slog.Logger
	cache       *idem.Cache
	events      idem.Option                        // idem.WithEvents, Op "idemhttp" (WithEvents)
	onEvent     func(context.Context, event.Event) // the same function, for the middleware's own events; nil without WithEvents
	needScope   bool                               // WithScopeRequired
	err         string                             // what an option found wrong
}

// noEvents is the events option of a middleware without WithEvents.
var noEvents = idem.WithEvents(nil)

func newConfig(opts []Option) (*config, error) {
	c := &config{
		header:      DefaultHeader,
		methods:     keyproto.DefaultMethods(),
		retention:   DefaultRetention,
		lease:       DefaultLease,
		retryAfter:  DefaultRetryAfter,
		maxKey:      DefaultMaxKeyLength,
		maxBody:     DefaultMaxBodyBytes,
		maxResponse: DefaultMaxResponseBytes,
		prefix:      DefaultKeyPrefix,
		scope:       ScopeHeader("Authorization"),
		fingerprint: fingerprintDefault,
		keepHeader:  KeepHeader,
		release:     ReleaseStatus,
		problem:     WriteProblem,
		logger:      slog.Default(),
		events:      noEvents,
	}
	for _, o := range opts {
		o(c)
	}
	if reason := c.invalid(); reason != "" {
		return nil, fmt.Errorf("idemhttp: %s: %w", reason, idem.ErrInvalid)
	}
	return c, nil
}

// invalid says what is wrong with c, or returns "".
func (c *config) invalid() string {
	switch {
	case c.err != "":
		return c.err
	case !keyproto.IsToken(c.header):
		return fmt.Sprintf("header name %q is not a valid field name", c.header)
	case keyproto.CheckRetention(c.retention) != "":
		return keyproto.CheckRetention(c.retention)
	case keyproto.CheckLease(c.lease) != "":
		return keyproto.CheckLease(c.lease)
	case c.wait < 0:
		return fmt.Sprintf("wait %v is negative", c.wait)
	case c.retryAfter < time.Second:
		return fmt.Sprintf("retry-after %v is below one second", c.retryAfter)
	case c.maxKey < 1:
		return fmt.Sprintf("maximum key length %d is below 1", c.maxKey)
	case c.maxBody < 0:
		return fmt.Sprintf("maximum body size %d is negative", c.maxBody)
	case c.maxResponse < 0:
		return fmt.Sprintf("maximum response size %d is negative", c.maxResponse)
	case c.scope == nil, c.fingerprint == nil, c.keepHeader == nil, c.release == nil, c.problem == nil:
		return "nil function option"
	case c.logger == nil:
		return "nil logger"
	}
	return ""
}

// WithHeader sets the request header that carries the key (default
// DefaultHeader, "Idempotency-Key").
func WithHeader(name string) Option {
	return func(c *config) { c.header = http.CanonicalHeaderKey(name) }
}

// WithMethods sets the methods the middleware applies to (default POST and
// PATCH, as the IETF draft suggests; the same rule as idemlambda's
// WithMethods). Names are matched without regard to case, must be RFC 9110
// tokens, and at least one is needed. Requests with other methods pass
// through untouched, key or not.
func WithMethods(methods ...string) Option {
	return func(c *config) {
		set, err := keyproto.Methods(methods)
		if err != nil {
			c.err = err.Error()
		}
		c.methods = set
	}
}

// WithRequired makes the key mandatory (default false): a request without
// it gets 400 with a problem+json body instead of passing through.
func WithRequired(required bool) Option {
	return func(c *config) { c.required = required }
}

// WithRetention sets how long a completed response is kept and replayed,
// counted from completion (default DefaultRetention, 24 hours; it must be
// positive). Publish it: the IETF draft asks servers to document their key
// expiry. A key reused after the retention runs the handler again.
func WithRetention(retention time.Duration) Option {
	return func(c *config) { c.retention = retention }
}

// WithLease sets how long a request's claim stays exclusive without news
// from its server (default DefaultLease, 30s; at least MinLease, so 0 is
// rejected, as by idemlambda's WithLease). The
// middleware extends the lease every third of it while the handler runs,
// so the lease bounds how long a crashed server blocks a key, not how long
// a handler may run.
func WithLease(lease time.Duration) Option {
	return func(c *config) { c.lease = lease }
}

// WithWait makes a duplicate that arrives while the first request is still
// running wait up to d for its response (default 0: answer 409 Conflict at
// once, as the IETF draft says). After d it gets the 409.
func WithWait(d time.Duration) Option {
	return func(c *config) { c.wait = d }
}

// WithRetryAfter sets the Retry-After sent with a 409 Conflict (default
// DefaultRetryAfter, one second; whole seconds, at least one). It is capped
// by the time left on the first request's lease, rounded up.
func WithRetryAfter(d time.Duration) Option {
	return func(c *config) { c.retryAfter = d }
}

// WithMaxKeyLength sets the longest key accepted, in bytes (default
// DefaultMaxKeyLength, 255). Longer keys get 400.
func WithMaxKeyLength(n int) Option {
	return func(c *config) { c.maxKey = n }
}

// WithMaxBodyBytes sets the largest request body accepted (default
// DefaultMaxBodyBytes, 1 MiB). The middleware reads the whole body to
// fingerprint it before the handler runs; a larger body gets 413 Content
// Too Large and the handler does not run.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) { c.maxBody = n }
}

// WithMaxResponseBytes sets the largest response body stored for replay
// (default DefaultMaxResponseBytes, 256 KiB; keep DynamoDB's 400 KB item
// limit in mind). A larger response is streamed to the client and the key
// is completed with its status and headers only: a retry gets them with an
// empty body and the header "Idempotent-Body-Omitted: true", never a second
// execution.
func WithMaxResponseBytes(n int) Option {
	return func(c *config) { c.maxResponse = n }
}

// WithCache serves replays from c, an idem.Cache shared with the process's
// other calls, with no store call: a retried request whose response this
// process stored or replayed before. The fingerprint is still checked. See
// idem.Cache for what a cache cannot see.
func WithCache(c *idem.Cache) Option {
	return func(cfg *config) { cfg.cache = c }
}

// WithKeyPrefix sets the prefix of every stored key (default
// DefaultKeyPrefix), so that several services or routes can share one
// table.
func WithKeyPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithScope sets the function that names the caller (default
// ScopeHeader("Authorization")). Keys are stored per scope, so a client
// can never receive another client's response, even with the same key.
// Return the authenticated principal (a user or tenant ID) when you have
// one: it survives token refreshes, which the default does not. If scope
// returns an error the request gets 401 Unauthorized.
func WithScope(scope func(r *http.Request) (string, error)) Option {
	return func(c *config) { c.scope = scope }
}

// WithFingerprint sets how a request is fingerprinted. By default a request
// with a JSON body (Content-Type application/json or a +json type) is
// fingerprinted with FingerprintJSONBody, so a retry whose client encoded
// the same body with other field order or spacing is the same request, and
// any other with FingerprintRequest (method, path, query and body, byte for
// byte). A key reused with a different fingerprint gets 422 Unprocessable
// Content. body is the whole request body. If fp returns an error the
// request gets 400.
func WithFingerprint(fp func(r *http.Request, body []byte) ([]byte, error)) Option {
	return func(c *config) { c.fingerprint = fp }
}

// WithScopeRequired with true refuses, with 401 Unauthorized, a request with a
// key whose scope is empty (with the default scope: no Authorization
// header), instead of storing its key in the scope every such caller
// shares. Without it such a request is served, and reported as
// event.Unscoped to WithEvents.
func WithScopeRequired(required bool) Option {
	return func(c *config) { c.needScope = required }
}

// fingerprintDefault is the default fingerprint: FingerprintJSONBody for a
// JSON body, FingerprintRequest for any other.
func fingerprintDefault(r *http.Request, body []byte) ([]byte, error) {
	if isJSON(r.Header.Get("Content-Type")) {
		return FingerprintJSONBody(r, body)
	}
	return FingerprintRequest(r, body)
}

// isJSON reports whether a Content-Type names JSON: application/json, or a
// structured syntax suffix +json (application/problem+json).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// WithHeaderFilter sets which response headers are stored and replayed
// (default KeepHeader). Names are canonical (http.CanonicalHeaderKey).
func WithHeaderFilter(keep func(name string) bool) Option {
	return func(c *config) { c.keepHeader = keep }
}

// WithRelease sets which response statuses release the key instead of
// storing the response, so the client can retry and the handler runs again
// (default ReleaseStatus: 5xx and 429).
func WithRelease(release func(status int) bool) Option {
	return func(c *config) { c.release = release }
}

// WithProblemHandler sets how the middleware's own errors are written
// (default WriteProblem, RFC 9457 application/problem+json). Headers the
// middleware sets, such as Retry-After, are already on w.
func WithProblemHandler(h func(w http.ResponseWriter, r *http.Request, p *Problem)) Option {
	return func(c *config) { c.problem = h }
}

// WithEvents reports what happens to each request's key to fn, as
// idem.WithEvents, with Op "idemhttp" and the stored key (prefix and
// scope included): claimed, replayed, in progress, mismatch, the lease's
// extensions, completed or released.
func WithEvents(fn func(context.Context, event.Event)) Option {
	return func(c *config) {
		if fn == nil {
			c.events, c.onEvent = noEvents, nil
			return
		}
		c.onEvent = func(ctx context.Context, e event.Event) {
			e.Op = "idemhttp"
			fn(ctx, e)
		}
		c.events = idem.WithEvents(c.onEvent)
	}
}

// WithLogger sets where the middleware reports failures it cannot answer
// with an HTTP status, such as a response that could not be stored
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// KeepHeader is the default header filter. It keeps every response header
// except those that describe one transfer rather than the response
// (Connection, Keep-Alive, Transfer-Encoding, Upgrade, Trailer, Te,
// Proxy-*), Date and Content-Length (set again on replay), Set-Cookie
// (session secrets do not belong in a shared store), and ReplayedHeader.
func KeepHeader(name string) bool {
	switch name {
	case "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Trailer", "Te",
		"Date", "Content-Length", "Set-Cookie", ReplayedHeader, omittedHeader:
		return false
	}
	return !strings.HasPrefix(name, "Proxy-") && !strings.HasPrefix(name, http.TrailerPrefix)
}

// ReleaseStatus is the default release policy, the one idemlambda's
// APIGateway follows: server errors (5xx) and 429 Too Many Requests mean
// the request was not, or not fully, processed, so the key is released
// for a retry. Every other response is the final answer for the key, 4xx
// included, and is replayed.
func ReleaseStatus(status int) bool { return keyproto.ReleaseStatus(status) }
