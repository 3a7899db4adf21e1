package idemlambda

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// Defaults of the options below.
const (
	// DefaultRetention is how long a result is kept and replayed
	// (WithRetention).
	DefaultRetention = keyproto.DefaultRetention
	// DefaultLease is the lease of a claim made without an invocation
	// deadline (WithLease).
	DefaultLease = keyproto.DefaultLease
	// MinLease is the shortest lease: the one taken from the deadline of
	// an invocation that is already almost out of time, and the shortest
	// WithLease accepts (idemhttp's is the same).
	MinLease = keyproto.MinLease
)

// Option configures every wrapper: Wrap, SQS and APIGateway. Each of them
// uses every Option. The options only some wrappers use have types of
// their own (SQSOption, APIGatewayOption), so a misplaced one does not
// compile. When an option is given twice, the last one wins.
type Option func(*config)

// SQSOption configures SQS: an Option, WithMessageKey, WithLogger, or
// WithValidation of an events.SQSMessage.
type SQSOption interface {
	applySQS(c *sqsConfig, v *validation[events.SQSMessage])
}

// APIGatewayOption configures APIGateway: an Option, WithMethods,
// WithScope, WithLogger, or WithValidation of an
// events.APIGatewayProxyRequest.
type APIGatewayOption interface {
	applyAPIGateway(c *apiConfig, v *validation[events.APIGatewayProxyRequest])
}

func (o Option) applySQS(c *sqsConfig, _ *validation[events.SQSMessage]) { o(&c.config) }
func (o Option) applyAPIGateway(c *apiConfig, _ *validation[events.APIGatewayProxyRequest]) {
	o(&c.config)
}

// config is what every wrapper uses.
type config struct {
	retention time.Duration
	lease     time.Duration // 0: from the invocation deadline
	wait      time.Duration
	prefix    string
	required  *bool
	onReplay  func(ctx context.Context, key string)
	cache     *idem.Cache
	events    func(context.Context, event.Event) // WithEvents
	eventsOpt idem.Option                        // idem.WithEvents of events, for the wrapper's Op (named)
	err       string                             // what an option found wrong
}

// sqsConfig is SQS's.
type sqsConfig struct {
	config
	messageKey func(events.SQSMessage) (string, error)
	logger     *slog.Logger
}

// apiConfig is APIGateway's.
type apiConfig struct {
	config
	methods map[string]bool
	scope   func(events.APIGatewayProxyRequest) (string, error)
	logger  *slog.Logger
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

func defaultConfig() config {
	return config{retention: DefaultRetention, prefix: DefaultKeyPrefix()}
}

func newConfig(opts []Option) (config, error) {
	c := defaultConfig()
	for _, o := range opts {
		o(&c)
	}
	return c, c.check()
}

func newSQSConfig(opts []SQSOption) (*sqsConfig, validation[events.SQSMessage], error) {
	c := &sqsConfig{config: defaultConfig(), logger: slog.Default()}
	var v validation[events.SQSMessage]
	for _, o := range opts {
		o.applySQS(c, &v)
	}
	if err := c.check(); err != nil {
		return nil, v, err
	}
	if c.logger == nil {
		return nil, v, invalid("nil logger")
	}
	return c, v, nil
}

func newAPIConfig(opts []APIGatewayOption) (*apiConfig, validation[events.APIGatewayProxyRequest], error) {
	c := &apiConfig{config: defaultConfig(), methods: keyproto.DefaultMethods(), scope: defaultScope, logger: slog.Default()}
	var v validation[events.APIGatewayProxyRequest]
	for _, o := range opts {
		o.applyAPIGateway(c, &v)
	}
	if err := c.check(); err != nil {
		return nil, v, err
	}
	if c.logger == nil {
		return nil, v, invalid("nil logger")
	}
	return c, v, nil
}

// check says what is wrong with c, as an error matching idem.ErrInvalid.
func (c *config) check() error {
	reason := c.err
	switch {
	case reason != "":
	case keyproto.CheckRetention(c.retention) != "":
		reason = keyproto.CheckRetention(c.retention)
	case c.wait < 0:
		reason = fmt.Sprintf("wait %v is negative", c.wait)
	}
	if reason != "" {
		return invalid(reason)
	}
	return nil
}

// invalid is the error of a wrapper given bad input: it matches
// idem.ErrInvalid.
func invalid(reason string) error {
	return fmt.Errorf("idemlambda: %s: %w", reason, idem.ErrInvalid)
}

// WithRetention sets how long a result is kept and replayed, counted from
// completion (default DefaultRetention, 24 hours; it must be positive).
// Make it longer than your redelivery horizon: SQS keeps a message up to
// 14 days.
func WithRetention(retention time.Duration) Option {
	return func(c *config) { c.retention = retention }
}

// WithLease sets a fixed lease, at least MinLease (so 0 is rejected, as by
// idemhttp's WithLease), extended every third of it while the handler
// runs. Without WithLease the lease runs until the invocation's deadline
// (the context's, which the Lambda runtime sets from the function's
// timeout) and is not extended: a duplicate cannot start while the first
// invocation may still be running, and can take over as soon as it has
// timed out. Without a deadline it is DefaultLease, extended.
//
// A fixed lease shorter than the timeout lets a retry take over sooner
// after a crash; the price is that a handler stalled past its lease (a
// store outage stops the extensions) may overlap a retry.
func WithLease(lease time.Duration) Option {
	return func(c *config) {
		c.lease = lease
		if reason := keyproto.CheckLease(lease); reason != "" {
			c.err = reason
		}
	}
}

// WithWait makes a duplicate that arrives while the first invocation is
// still running wait up to d for its result instead of failing with
// idem.ErrInProgress (default 0). Waiting costs invocation time; SQS
// redelivers a failed record after its visibility timeout anyway.
func WithWait(d time.Duration) Option {
	return func(c *config) { c.wait = d }
}

// WithKeyPrefix sets the prefix of every key (default DefaultKeyPrefix()).
// Give each wrapped handler that shares a table a prefix of its own, fixed
// in code, so keys survive renames of the function.
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

// WithCache serves replays from c, an idem.Cache shared with the process's
// other calls, with no store call: an event this process (this warm Lambda
// environment) handled or replayed before. See idem.Cache for what a cache
// cannot see; each Lambda environment has its own.
func WithCache(c *idem.Cache) Option {
	return func(cfg *config) { cfg.cache = c }
}

// WithOnReplay sets a function called whenever a stored result is returned
// instead of running the handler (for SQS, whenever a duplicate record is
// skipped), with the full key: for metrics and logs.
func WithOnReplay(fn func(ctx context.Context, key string)) Option {
	return func(c *config) { c.onReplay = fn }
}

// WithEvents reports what happens to each event's key to fn, as
// idem.WithEvents, with Op "idemlambda.Wrap", "idemlambda.SQS" or
// "idemlambda.APIGateway" and the full key (prefix included).
func WithEvents(fn func(ctx context.Context, e event.Event)) Option {
	return func(c *config) { c.events = fn }
}

// named makes the events option of the wrapper op, once, at construction.
func (c *config) named(op string) {
	fn := c.events
	if fn == nil {
		return
	}
	c.eventsOpt = idem.WithEvents(func(ctx context.Context, e event.Event) {
		e.Op = op
		fn(ctx, e)
	})
}

// LoggerOption configures SQS and APIGateway, the wrappers that report
// failures which do not fail the invocation. See WithLogger.
type LoggerOption struct{ l *slog.Logger }

// WithLogger sets where SQS and APIGateway report failures that do not fail
// the invocation (default slog.Default()): SQS records that failed,
// responses that could not be stored. Wrap reports every failure to its
// caller and takes no logger.
func WithLogger(l *slog.Logger) LoggerOption { return LoggerOption{l} }

func (o LoggerOption) applySQS(c *sqsConfig, _ *validation[events.SQSMessage]) { c.logger = o.l }
func (o LoggerOption) applyAPIGateway(c *apiConfig, _ *validation[events.APIGatewayProxyRequest]) {
	c.logger = o.l
}

// MessageKeyOption configures SQS. See WithMessageKey.
type MessageKeyOption func(events.SQSMessage) (string, error)

// WithMessageKey sets the key of an SQS record (default its message ID,
// which is the same on every redelivery). Use a business ID from the body
// to de-duplicate messages that were sent twice, or DeduplicationID for
// FIFO queues.
func WithMessageKey(key func(msg events.SQSMessage) (string, error)) MessageKeyOption {
	return MessageKeyOption(key)
}

func (o MessageKeyOption) applySQS(c *sqsConfig, _ *validation[events.SQSMessage]) {
	if o == nil {
		c.err = "WithMessageKey(nil)"
	}
	c.messageKey = o
}

// APIGatewayOnly configures APIGateway alone. See WithMethods and
// WithScope.
type APIGatewayOnly func(*apiConfig)

func (o APIGatewayOnly) applyAPIGateway(c *apiConfig, _ *validation[events.APIGatewayProxyRequest]) {
	o(c)
}

// WithMethods sets the HTTP methods APIGateway applies to (default POST and
// PATCH; the same rule as idemhttp's WithMethods). Names are matched
// without regard to case, must be RFC 9110 tokens, and at least one is
// needed. Requests with other methods pass through.
func WithMethods(methods ...string) APIGatewayOnly {
	return func(c *apiConfig) {
		set, err := keyproto.Methods(methods)
		if err != nil {
			c.err = err.Error()
		}
		c.methods = set
	}
}

// WithScope sets how APIGateway names the caller, whose keys are kept apart
// from every other caller's. The default is the authorizer's principalId
// when the API has an authorizer, else a hash of the Authorization header.
// An error gets 401.
func WithScope(scope func(req events.APIGatewayProxyRequest) (string, error)) APIGatewayOnly {
	return func(c *apiConfig) {
		if scope == nil {
			c.err = "WithScope(nil)"
		}
		c.scope = scope
	}
}

// Validation turns on payload validation for SQS (Validation of an
// events.SQSMessage) or APIGateway (of an events.APIGatewayProxyRequest).
// Its type parameter is the wrapper's event type, so a validation of any
// other type does not compile where the wrapper's options go. See
// WithValidation; Wrap takes its validation as WrapValidated's argument.
type Validation[In any] struct{ fn func(In) (any, error) }

// WithValidation turns on payload validation: the part of the event fn
// returns is fingerprinted (idem.Fingerprint) and stored with the key, and
// an event with the same key and a different part fails with
// idem.ErrMismatch (APIGateway: 422) instead of getting the stored result.
// Return only the fields that define the request: an API Gateway event's
// request context changes on every retry. For APIGateway it replaces the
// default fingerprint of method, path, query and body.
func WithValidation[In any](fn func(event In) (any, error)) Validation[In] {
	return Validation[In]{fn}
}

func (o Validation[In]) applySQS(c *sqsConfig, v *validation[In]) { o.set(&c.config, v) }
func (o Validation[In]) applyAPIGateway(c *apiConfig, v *validation[In]) {
	o.set(&c.config, v)
}

func (o Validation[In]) set(c *config, v *validation[In]) {
	if o.fn == nil {
		c.err = "WithValidation(nil)"
	}
	v.fn = o.fn
}

// validation is a wrapper's payload validation, if any.
type validation[In any] struct{ fn func(In) (any, error) }

// fingerprint applies the validation to event, or returns nil.
func (v validation[In]) fingerprint(event In) ([]byte, error) {
	if v.fn == nil {
		return nil, nil
	}
	part, err := v.fn(event)
	if err != nil {
		return nil, fmt.Errorf("idemlambda: payload validation: %w", err)
	}
	return idem.Fingerprint(part)
}

func (c *config) isRequired(def bool) bool {
	if c.required == nil {
		return def
	}
	return *c.required
}

// idemOptions are the options of one idem call made at ctx.
func (c *config) idemOptions(ctx context.Context, fp []byte) []idem.Option {
	opts := []idem.Option{idem.WithRetention(c.retention), idem.WithKeyPrefix(c.prefix), idem.WithWait(c.wait), idem.WithCache(c.cache)}
	if fp != nil {
		opts = append(opts, idem.WithFingerprint(fp))
	}
	if c.eventsOpt != nil {
		opts = append(opts, c.eventsOpt)
	}
	lease, extend := c.leaseAt(ctx, time.Now())
	opts = append(opts, idem.WithLease(lease))
	if !extend {
		opts = append(opts, idem.WithoutHeartbeat())
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
	return DefaultLease, true
}

func (c *config) replayed(ctx context.Context, key string) {
	if c.onReplay != nil {
		c.onReplay(ctx, c.prefix+key)
	}
}
