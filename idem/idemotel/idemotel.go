package idemotel

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/idemkit/idemkit/idem/event"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemkit/idemkit/idem"
)

// The instrumentation scope and the instruments' names.
const (
	ScopeName    = "github.com/idemkit/idemkit/idem/idemotel"
	EventsName   = "idem.events"
	DurationName = "idem.duration"
)

// The attribute keys.
const (
	EventKey   = attribute.Key("idem.event")
	OpKey      = attribute.Key("idem.op")
	OutcomeKey = attribute.Key("idem.outcome")
	BackendKey = attribute.Key("idem.backend")
	AttemptKey = attribute.Key("idem.attempt")
	KeyHashKey = attribute.Key("idem.key_hash")
)

// durationBounds are idem.duration's buckets, in seconds: from a
// millisecond (a cached replay, a write) to five minutes (a long fn).
var durationBounds = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// An Option configures New.
type Option func(*Recorder)

// WithBackend sets the idem.backend attribute of every measurement (for
// example "dynamodb", "cassandra"; default none), to tell stores apart.
func WithBackend(name string) Option {
	return func(r *Recorder) { r.backend = name }
}

// WithKeyHash sets the span attribute idem.key_hash on the span of each
// call that has events: the first 8 bytes, in hex, of the HMAC-SHA-256 of
// the full key under secret (default: no key attribute at all). Keys may
// be personal data, and many are guessable (order numbers): keep secret
// secret, so a hash cannot be tested against guesses. Metrics never carry
// the key.
func WithKeyHash(secret []byte) Option {
	return func(r *Recorder) { r.hashKeys, r.secret = true, append([]byte(nil), secret...) }
}

// Recorder turns idem's events into measurements and span events. Pass
// its Events method to idem.WithEvents (or the WithEvents of saga,
// idemhttp or idemlambda). A Recorder is safe for concurrent use.
type Recorder struct {
	events   metric.Int64Counter
	duration metric.Float64Histogram
	tracer   trace.Tracer
	backend  string
	hashKeys bool
	secret   []byte
}

// New returns a Recorder whose instruments come from mp and whose spans
// (Start, Do) come from tp. It fails if an instrument cannot be made.
func New(mp metric.MeterProvider, tp trace.TracerProvider, opts ...Option) (*Recorder, error) {
	if mp == nil || tp == nil {
		return nil, fmt.Errorf("idemotel: a meter provider and a tracer provider are needed (the noop packages have both): %w", idem.ErrInvalid)
	}
	r := &Recorder{tracer: tp.Tracer(ScopeName)}
	for _, o := range opts {
		o(r)
	}
	m := mp.Meter(ScopeName)
	var err error
	if r.events, err = m.Int64Counter(EventsName, metric.WithUnit("{event}"),
		metric.WithDescription("What happened to idempotency keys, by event, operation and outcome.")); err != nil {
		return nil, fmt.Errorf("idemotel: %s: %w", EventsName, err)
	}
	if r.duration, err = m.Float64Histogram(DurationName, metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBounds...),
		metric.WithDescription("How long each step of an idempotent call took: the claim, a wait, the hold of the key, an extension.")); err != nil {
		return nil, fmt.Errorf("idemotel: %s: %w", DurationName, err)
	}
	return r, nil
}

// Events records e: it counts it in idem.events, adds its duration to
// idem.duration, and adds a span event to the span in ctx if it records.
func (r *Recorder) Events(ctx context.Context, e event.Event) {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, EventKey.String(e.Kind.String()), OpKey.String(e.Op), OutcomeKey.String(Outcome(e.Err)))
	if r.backend != "" {
		attrs = append(attrs, BackendKey.String(r.backend))
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	r.events.Add(ctx, 1, set)
	r.duration.Record(ctx, e.Duration.Seconds(), set)

	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() || e.Kind == event.Extended {
		return
	}
	if r.hashKeys {
		span.SetAttributes(KeyHashKey.String(r.hash(e.Key)))
	}
	if e.Attempt > 0 {
		attrs = append(attrs, AttemptKey.Int(e.Attempt))
	}
	span.AddEvent("idem."+e.Kind.String(), trace.WithAttributes(attrs...))
}

func (r *Recorder) hash(key string) string {
	h := hmac.New(sha256.New, r.secret)
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Start starts a span named "idem."+op (op names the call: "Do", "Once",
// "saga.Run") for an idem call made with ctx and WithEvents(r.Events), so
// that its events land on it. The caller ends the span (End records err:
// see Do).
func (r *Recorder) Start(ctx context.Context, op string) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	if r.backend != "" {
		opts = append(opts, trace.WithAttributes(BackendKey.String(r.backend)))
	}
	return r.tracer.Start(ctx, "idem."+op, opts...)
}

// End ends span, started by Start, recording err (if any) and an error
// status.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, Outcome(err))
	}
	span.End()
}

// Do is idem.Do inside a span "idem.Do" that collects the call's events
// (WithEvents(r.Events) is added to opts): fn's own spans are its
// children, and an error ends it with an error status.
func Do[T any](ctx context.Context, r *Recorder, s idem.Store, key string, fn func(context.Context) (T, error), opts ...idem.Option) (T, error) {
	ctx, span := r.Start(ctx, "Do")
	v, err := idem.Do(ctx, s, key, fn, append(opts[:len(opts):len(opts)], idem.WithEvents(r.Events))...)
	End(span, err)
	return v, err
}

// Outcome classifies an event's error for the idem.outcome attribute:
// "ok" for nil, then by the first that matches: lease_lost,
// unknown_outcome, mismatch, in_progress, conflict, invalid, permanent
// (an *idem.PermanentError), canceled, deadline_exceeded; any other error
// is "error".
func Outcome(err error) string {
	var perm *idem.PermanentError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, idem.ErrLeaseLost):
		return "lease_lost"
	case errors.Is(err, idem.ErrUnknownOutcome):
		return "unknown_outcome"
	case errors.Is(err, idem.ErrMismatch):
		return "mismatch"
	case errors.Is(err, idem.ErrInProgress):
		return "in_progress"
	case errors.Is(err, idem.ErrConflict):
		return "conflict"
	case errors.Is(err, idem.ErrInvalid):
		return "invalid"
	case errors.As(err, &perm):
		return "permanent"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	return "error"
}
