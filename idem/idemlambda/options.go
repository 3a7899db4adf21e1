package idemlambda

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/idemkit/idemkit/idem"
)

// MinLease is the shortest lease: the one taken from the deadline of an
// invocation that is already almost out of time, and the shortest
// WithLease accepts.
const MinLease = 100 * time.Millisecond

// Option configures Wrap, SQS and APIGateway. Each option says which of
// them it affects; the others ignore it.
type Option func(*config)

type config struct {
	ttl        time.Duration
	lease      time.Duration // 0: from the invocation deadline
	wait       time.Duration
	prefix     string
	required   *bool
	validation *validation
	methods    map[string]bool
	messageKey func(events.SQSMessage) (string, error)
	scope      func(events.APIGatewayProxyRequest) (string, error)
	onReplay   func(ctx context.Context, key string)
	logger     *slog.Logger
	err        string // what an option found wrong
}

type validation struct {
	typ reflect.Type
	fn  func(event any) (any, error)
}

// DefaultKeyPrefix is the prefix of every key unless WithKeyPrefix says
// otherwise: "idemlambda/" and the function's name (AWS_LAMBDA_FUNCTION_NAME,
// the same for every version and alias), then "/".
func DefaultKeyPrefix() string {
	if lambdacontext.FunctionName == "" {
		return "idemlambda/"
	}
	return "idemlambda/" + lambdacontext.FunctionName + "/"
}

func newConfig(opts []Option, in reflect.Type) (*config, error) {
	c := &config{
		ttl:     idem.DefaultTTL,
		prefix:  DefaultKeyPrefix(),
		methods: map[string]bool{"POST": true, "PATCH": true},
		logger:  slog.Default(),
	}
	for _, o := range opts {
		o(c)
	}
	if reason := c.invalid(in); reason != "" {
		return nil, invalid(reason)
	}
	return c, nil
}

// invalid says what is wrong with c, for a handler of events of type in,
// or returns "".
func (c *config) invalid(in reflect.Type) string {
	switch {
	case c.err != "":
		return c.err
	case c.ttl <= 0:
		return fmt.Sprintf("ttl %v is not positive", c.ttl)
	case c.lease < 0:
		return fmt.Sprintf("lease %v is negative", c.lease)
	case c.lease > 0 && c.lease < MinLease:
		return fmt.Sprintf("lease %v is below MinLease (%v)", c.lease, MinLease)
	case c.wait < 0:
		return fmt.Sprintf("wait %v is negative", c.wait)
	case c.logger == nil:
		return "nil logger"
	case c.validation != nil && c.validation.typ != in:
		return fmt.Sprintf("WithValidation takes a %v, the handler's event is a %v", c.validation.typ, in)
	}
	return ""
}

// invalid is the error of a wrapper given bad input: it matches
// idem.ErrInvalid.
func invalid(reason string) error {
	return fmt.Errorf("idemlambda: %s: %w", reason, idem.ErrInvalid)
}

// nilStore reports whether s is nil, or a nil pointer that would panic at
// the first event.
func nilStore(s idem.Store) bool {
	if s == nil {
		return true
	}
	v := reflect.ValueOf(s)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// WithTTL sets how long a result is kept and replayed, counted from
// completion (all wrappers; default idem.DefaultTTL, 24 hours). Make it
// longer than your redelivery horizon: SQS keeps a message up to 14 days.
func WithTTL(ttl time.Duration) Option {
	return func(c *config) { c.ttl = ttl }
}

// WithLease sets a fixed lease, at least MinLease, extended every third of
// it while the handler runs (all wrappers). By default the lease runs
// until the invocation's deadline (the context's, which the Lambda runtime
// sets from the function's timeout) and is not extended: a duplicate cannot start while the first
// invocation may still be running, and can take over as soon as it has
// timed out. Without a deadline the default is idem.DefaultLease, extended.
//
// A fixed lease shorter than the timeout lets a retry take over sooner
// after a crash; the price is that a handler stalled past its lease (a
// store outage stops the extensions) may overlap a retry.
func WithLease(lease time.Duration) Option {
	return func(c *config) { c.lease = lease }
}

// WithWait makes a duplicate that arrives while the first invocation is
// still running wait up to d for its result instead of failing with
// idem.ErrInProgress (all wrappers; default 0). Waiting costs invocation
// time; SQS redelivers a failed record after its visibility timeout anyway.
func WithWait(d time.Duration) Option {
	return func(c *config) { c.wait = d }
}

// WithKeyPrefix sets the prefix of every key (all wrappers; default
// DefaultKeyPrefix()). Give each wrapped handler that shares a table a
// prefix of its own, fixed in code, so keys survive renames of the
// function.
func WithKeyPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithRequired sets whether an event without a key is an error. For Wrap
// it defaults to true: the key function returning "" fails the invocation
// with ErrNoKey. For APIGateway it defaults to false, as the IETF draft
// says: a request without an Idempotency-Key header runs without
// protection; with true it gets 400. SQS always has a key (the message ID
// by default); with WithMessageKey, a record whose key is "" fails unless
// WithRequired(false).
func WithRequired(required bool) Option {
	return func(c *config) { c.required = &required }
}

// WithValidation turns on payload validation (all wrappers): the part of
// the event fn returns is fingerprinted (idem.Fingerprint) and stored with
// the key, and an event with the same key and a different part fails with
// idem.ErrMismatch (APIGateway: 422) instead of getting the stored result.
// Return only the fields that define the request: an API Gateway event's
// request context changes on every retry. In is the event type of the
// wrapper it is given to (events.SQSMessage for SQS, and
// events.APIGatewayProxyRequest for APIGateway, where it replaces the
// default fingerprint of method, path, query and body).
func WithValidation[In any](fn func(event In) (any, error)) Option {
	return func(c *config) {
		if fn == nil {
			c.err = "WithValidation(nil)"
			return
		}
		c.validation = &validation{
			typ: reflect.TypeFor[In](),
			fn:  func(e any) (any, error) { return fn(e.(In)) },
		}
	}
}

// WithMessageKey sets the key of an SQS record (SQS only; default its
// message ID, which is the same on every redelivery). Use a business ID
// from the body to de-duplicate messages that were sent twice, or
// DeduplicationID for FIFO queues.
func WithMessageKey(key func(msg events.SQSMessage) (string, error)) Option {
	return func(c *config) {
		if key == nil {
			c.err = "WithMessageKey(nil)"
		}
		c.messageKey = key
	}
}

// WithMethods sets the HTTP methods APIGateway applies to (default POST and
// PATCH); requests with other methods pass through.
func WithMethods(methods ...string) Option {
	return func(c *config) {
		c.methods = map[string]bool{}
		for _, m := range methods {
			c.methods[strings.ToUpper(m)] = true
		}
		if len(methods) == 0 {
			c.err = "WithMethods()"
		}
	}
}

// WithScope sets how APIGateway names the caller, whose keys are kept apart
// from every other caller's (APIGateway only). The default is the
// authorizer's principalId when the API has an authorizer, else a hash of
// the Authorization header. An error gets 401.
func WithScope(scope func(req events.APIGatewayProxyRequest) (string, error)) Option {
	return func(c *config) {
		if scope == nil {
			c.err = "WithScope(nil)"
		}
		c.scope = scope
	}
}

// WithOnReplay sets a function called whenever a stored result is returned
// instead of running the handler (all wrappers; for SQS, whenever a
// duplicate record is skipped), with the full key: for metrics and logs.
func WithOnReplay(fn func(ctx context.Context, key string)) Option {
	return func(c *config) { c.onReplay = fn }
}

// WithLogger sets where failures that do not fail the invocation are
// reported (default slog.Default()): SQS records that failed, responses
// that could not be stored.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

func (c *config) isRequired(def bool) bool {
	if c.required == nil {
		return def
	}
	return *c.required
}

// idemOptions are the options of one idem call made at ctx.
func (c *config) idemOptions(ctx context.Context, fp []byte, replayed *bool) []idem.Option {
	opts := []idem.Option{idem.WithTTL(c.ttl), idem.WithKeyPrefix(c.prefix), idem.WithWait(c.wait)}
	if replayed != nil {
		opts = append(opts, idem.WithReplayed(replayed))
	}
	if fp != nil {
		opts = append(opts, idem.WithFingerprint(fp))
	}
	lease, extend := c.leaseAt(ctx, time.Now())
	opts = append(opts, idem.WithLease(lease))
	if !extend {
		opts = append(opts, idem.WithHeartbeat(-1))
	}
	return opts
}

// leaseAt is the lease of a claim taken at now, and whether it is extended
// while the handler runs.
func (c *config) leaseAt(ctx context.Context, now time.Time) (time.Duration, bool) {
	if c.lease > 0 {
		return c.lease, true
	}
	if dl, ok := ctx.Deadline(); ok {
		return max(dl.Sub(now), MinLease), false
	}
	return idem.DefaultLease, true
}

// fingerprint applies WithValidation to event, or returns nil.
func (c *config) fingerprint(event any) ([]byte, error) {
	if c.validation == nil {
		return nil, nil
	}
	part, err := c.validation.fn(event)
	if err != nil {
		return nil, fmt.Errorf("idemlambda: payload validation: %w", err)
	}
	return idem.Fingerprint(part)
}

func (c *config) replayed(ctx context.Context, key string) {
	if c.onReplay != nil {
		c.onReplay(ctx, c.prefix+key)
	}
}
