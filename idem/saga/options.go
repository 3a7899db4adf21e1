package saga

import (
	"context"
	"fmt"
	"time"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/idemkit/idemkit/idem"
)

// Defaults of the options.
const (
	defaultRetention = 24 * time.Hour   // WithRetention
	defaultLease     = 30 * time.Second // WithLease
)

// An Option configures Run. Run takes no idem.Option: these are the ones a
// saga passes on to the claims of the saga, its steps and compensations.
type Option func(*config)

// config is the settings of a saga, from its options.
type config struct {
	retention, lease, wait time.Duration
	prefix                 string
	now                    func() time.Time
	events                 func(context.Context, event.Event)
}

// WithRetention sets how long every record of the saga (its outcome, each
// step's result, each compensation's, the abort decision) is kept (default
// 24h). It must outlast the saga, from its first step to its last
// compensation: a step whose record expired would run again.
func WithRetention(d time.Duration) Option { return func(c *config) { c.retention = d } }

// WithLease sets the lease of the saga's claim and of each step's (default
// 30s), extended while they run, as idem.WithLease.
func WithLease(d time.Duration) Option { return func(c *config) { c.lease = d } }

// WithWait makes a concurrent Run wait up to d for the run in flight
// instead of returning an *idem.InProgressError (default 0). Steps and
// compensations always wait at least one lease for a step held by a run
// that crashed.
func WithWait(d time.Duration) Option { return func(c *config) { c.wait = d } }

// WithKeyPrefix puts every key of the saga under prefix.
func WithKeyPrefix(prefix string) Option { return func(c *config) { c.prefix = prefix } }

// WithClock sets the clock leases are measured with (default time.Now), for
// tests.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithEvents reports what happens to the saga's keys to fn, as
// idem.WithEvents: the saga's own claim with Op "saga.Run", its steps'
// with "saga.Step", its compensations' with "saga.Compensate".
func WithEvents(fn func(context.Context, event.Event)) Option {
	return func(c *config) { c.events = fn }
}

// newConfig applies opts to the defaults and rejects bad values, before
// anything is written.
func newConfig(id string, opts []Option) (*config, error) {
	c := &config{retention: defaultRetention, lease: defaultLease, now: time.Now}
	for _, o := range opts {
		if o == nil {
			return nil, invalid(id, "an option is nil")
		}
		o(c)
	}
	switch {
	case id == "":
		return nil, invalid(id, "saga ID is empty")
	case c.retention <= 0:
		return nil, invalid(id, fmt.Sprintf("retention %v is not positive", c.retention))
	case c.lease <= 0:
		return nil, invalid(id, fmt.Sprintf("lease %v is not positive", c.lease))
	case c.wait < 0:
		return nil, invalid(id, fmt.Sprintf("wait %v is negative", c.wait))
	case c.now == nil:
		return nil, invalid(id, "clock is nil")
	}
	return c, nil
}

// stepWait is how long a step or a compensation waits for one held by
// another run: at least a lease, so a crashed run's step is taken over.
func (c *config) stepWait() time.Duration { return max(c.wait, c.lease) }

// idemOptions are the options of a claim of the saga, waiting up to wait,
// reporting events as op.
func (c *config) idemOptions(op string, wait time.Duration) []idem.Option {
	opts := []idem.Option{
		idem.WithRetention(c.retention), idem.WithLease(c.lease), idem.WithWait(wait),
		idem.WithKeyPrefix(c.prefix), idem.WithClock(c.now),
	}
	if fn := c.events; fn != nil {
		opts = append(opts, idem.WithEvents(func(ctx context.Context, e event.Event) {
			e.Op = op
			fn(ctx, e)
		}))
	}
	return opts
}

// invalid is the error for bad input to the saga id, matching idem.ErrInvalid.
func invalid(id, reason string) error {
	return fmt.Errorf("saga %q: %s: %w", id, reason, idem.ErrInvalid)
}
