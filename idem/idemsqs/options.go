package idemsqs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// Defaults of the options below, and the pause of short polling.
const (
	// DefaultVisibility is the visibility timeout Consume asks for on each
	// receive and extends a message's to while it waits or runs
	// (WithVisibility).
	DefaultVisibility = 30 * time.Second
	// DefaultWaitTime is how long a receive waits for a message (long
	// polling; WithWaitTime): SQS's maximum.
	DefaultWaitTime = 20 * time.Second
	// DefaultMaxMessages is how many messages a receive asks for
	// (WithMaxMessages): SQS's maximum.
	DefaultMaxMessages = 10
	// DefaultKeyPrefix is the prefix of every key (WithKeyPrefix).
	DefaultKeyPrefix = "idemsqs/"
	// DefaultRetention is how long a handled key is remembered
	// (WithRetention).
	DefaultRetention = keyproto.DefaultRetention
	// DefaultLease is how long a claim is exclusive, extended while fn
	// runs (WithLease).
	DefaultLease = keyproto.DefaultLease
	// ShortPollPause is how long Consume waits after an empty receive when
	// WithWaitTime(0) makes it short-poll.
	ShortPollPause = 100 * time.Millisecond
)

// Option configures Consume. When an option is given twice, the last one
// wins.
type Option func(*config)

type config struct {
	key         func(types.Message) (string, error)
	visibility  time.Duration
	wait        time.Duration
	maxMessages int32
	prefix      string
	retention   time.Duration
	lease       time.Duration
	onReplay    func(ctx context.Context, key string)
	logger      *slog.Logger
	err         string // what an option found wrong
}

func newConfig(opts []Option) (*config, error) {
	c := &config{
		key:         func(m types.Message) (string, error) { return aws.ToString(m.MessageId), nil },
		visibility:  DefaultVisibility,
		wait:        DefaultWaitTime,
		maxMessages: DefaultMaxMessages,
		prefix:      DefaultKeyPrefix,
		retention:   DefaultRetention,
		lease:       DefaultLease,
		logger:      slog.Default(),
	}
	for _, o := range opts {
		o(c)
	}
	reason := c.err
	switch {
	case reason != "":
	case c.key == nil:
		reason = "WithKey(nil)"
	case c.visibility < time.Second || c.visibility > 12*time.Hour || c.visibility%time.Second != 0:
		reason = fmt.Sprintf("visibility %v: want whole seconds from 1s to 12h", c.visibility)
	case c.wait < 0 || c.wait > 20*time.Second || c.wait%time.Second != 0:
		reason = fmt.Sprintf("wait time %v: want whole seconds from 0 to 20s", c.wait)
	case c.maxMessages < 1 || c.maxMessages > 10:
		reason = fmt.Sprintf("max messages %d: want 1 to 10", c.maxMessages)
	case keyproto.CheckRetention(c.retention) != "":
		reason = keyproto.CheckRetention(c.retention)
	case keyproto.CheckLease(c.lease) != "":
		reason = keyproto.CheckLease(c.lease)
	case c.logger == nil:
		reason = "WithLogger(nil)"
	}
	if reason != "" {
		return nil, invalid(reason)
	}
	return c, nil
}

// invalid is the error of Consume given bad input: it matches
// idem.ErrInvalid.
func invalid(reason string) error {
	return fmt.Errorf("idemsqs: %s: %w", reason, idem.ErrInvalid)
}

func (c *config) idemOptions() []idem.Option {
	return []idem.Option{idem.WithKeyPrefix(c.prefix), idem.WithRetention(c.retention), idem.WithLease(c.lease)}
}

// WithKey sets the key of a message (default its message ID, the same on
// every redelivery). Use an event ID the producer sets (Attribute, or a
// field of the body) to handle once an event that was sent twice as two
// messages. A key function's error, or "", leaves the message for
// redelivery.
func WithKey(key func(m types.Message) (string, error)) Option {
	return func(c *config) { c.key = key }
}

// WithVisibility sets the visibility timeout asked for on each receive, and
// the one a message's is extended to every third of it while its batch is
// handled (default DefaultVisibility; whole seconds from 1s to 12h, SQS's
// limits). A shorter one lets a crashed consumer's messages come back
// sooner, at the price of more ChangeMessageVisibility calls.
func WithVisibility(d time.Duration) Option {
	return func(c *config) { c.visibility = d }
}

// WithWaitTime sets how long a receive waits for a message to arrive
// (default DefaultWaitTime; whole seconds from 0 to 20s). 0 short-polls,
// pausing ShortPollPause after an empty answer.
func WithWaitTime(d time.Duration) Option {
	return func(c *config) { c.wait = d }
}

// WithMaxMessages sets how many messages a receive asks for (default
// DefaultMaxMessages; 1 to 10). The messages of a batch are handled one at
// a time, their visibility extended until each is done.
func WithMaxMessages(n int) Option {
	return func(c *config) { c.maxMessages = int32(min(max(n, -1), 11)) }
}

// WithKeyPrefix sets the prefix of every key (default DefaultKeyPrefix).
// Give each consumer that shares a table a prefix of its own, fixed in
// code.
func WithKeyPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithRetention sets how long a handled key is remembered, counted from
// completion (default DefaultRetention, 24 hours; it must be positive).
// Make it longer than your redelivery horizon: SQS keeps a message up to
// 14 days.
func WithRetention(retention time.Duration) Option {
	return func(c *config) { c.retention = retention }
}

// WithLease sets how long a key's claim is exclusive (default
// DefaultLease; at least 100ms), extended every third of it while fn runs.
// It is what holds off a redelivery when a consumer dies mid-work: the
// redelivered copy is left in the queue until the dead consumer's lease
// has run out, then runs fn again.
func WithLease(lease time.Duration) Option {
	return func(c *config) { c.lease = lease }
}

// WithOnReplay sets a function called, with the full key, whenever a
// message is deleted without running fn because its key was handled
// before: for metrics and logs.
func WithOnReplay(fn func(ctx context.Context, key string)) Option {
	return func(c *config) { c.onReplay = fn }
}

// WithLogger sets where Consume reports the messages it leaves for
// redelivery and the calls to SQS that failed without stopping it (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}
