package idemkafka

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// Defaults of the options below.
const (
	// DefaultKeyPrefix is the prefix of every key (WithKeyPrefix). Consume
	// adds the client's consumer group to it: "idemkafka/GROUP/".
	DefaultKeyPrefix = "idemkafka/"
	// DefaultRetention is how long a handled record is remembered
	// (WithRetention).
	DefaultRetention = keyproto.DefaultRetention
	// DefaultLease is how long a claim is exclusive, extended while fn
	// runs (WithLease).
	DefaultLease = keyproto.DefaultLease
	// DefaultConcurrency is how many partitions of a fetch Consume handles
	// at once (WithConcurrency).
	DefaultConcurrency = 8
	// DefaultMinBackoff and DefaultMaxBackoff bound the pause of a
	// partition whose record failed, before it is fetched again from that
	// record (WithBackoff).
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// Option configures NewHandler and Consume. When an option is given twice,
// the last one wins.
type Option func(*config)

type config struct {
	key         func(*kgo.Record) (string, error)
	prefix      string
	prefixSet   bool // WithKeyPrefix was given: Consume adds no group
	retention   time.Duration
	lease       time.Duration
	concurrency int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	onReplay    func(ctx context.Context, r *kgo.Record, key string)
	logger      *slog.Logger
}

func newConfig(opts []Option) (*config, error) {
	c := &config{
		key:         Offset,
		prefix:      DefaultKeyPrefix,
		retention:   DefaultRetention,
		lease:       DefaultLease,
		concurrency: DefaultConcurrency,
		minBackoff:  DefaultMinBackoff,
		maxBackoff:  DefaultMaxBackoff,
		logger:      slog.Default(),
	}
	for _, o := range opts {
		o(c)
	}
	var reason string
	switch {
	case c.key == nil:
		reason = "WithKey(nil)"
	case keyproto.CheckRetention(c.retention) != "":
		reason = keyproto.CheckRetention(c.retention)
	case keyproto.CheckLease(c.lease) != "":
		reason = keyproto.CheckLease(c.lease)
	case c.concurrency < 1:
		reason = fmt.Sprintf("concurrency %d: want at least 1", c.concurrency)
	case c.minBackoff <= 0 || c.maxBackoff < c.minBackoff:
		reason = fmt.Sprintf("backoff from %v to %v: want 0 < min <= max", c.minBackoff, c.maxBackoff)
	case c.logger == nil:
		reason = "WithLogger(nil)"
	}
	if reason != "" {
		return nil, invalid(reason)
	}
	return c, nil
}

// invalid is the error of NewHandler and Consume given bad input: it
// matches idem.ErrInvalid.
func invalid(reason string) error {
	return fmt.Errorf("idemkafka: %s: %w", reason, idem.ErrInvalid)
}

func (c *config) idemOptions() []idem.Option {
	return []idem.Option{idem.WithKeyPrefix(c.prefix), idem.WithRetention(c.retention), idem.WithLease(c.lease)}
}

// Offset is the default key function: the record's topic, partition and
// offset, joined with idem.JoinKey ("orders/3/1207"). It is the same on
// every redelivery of the record, and names no other record of the topic,
// as long as the topic is not deleted and created again (a new topic's
// offsets start over at 0: give it another WithKeyPrefix).
func Offset(r *kgo.Record) (string, error) {
	return idem.JoinKey(r.Topic, strconv.Itoa(int(r.Partition)), strconv.FormatInt(r.Offset, 10)), nil
}

// Header is a key function for WithKey: the value of the record header
// name, such as an event ID the producer sets, so that an event produced
// twice at two offsets (a producer's retry, a replayed outbox) is handled
// once. A record without it has no key (ErrNoKey).
func Header(name string) func(*kgo.Record) (string, error) {
	return func(r *kgo.Record) (string, error) {
		for _, h := range r.Headers {
			if h.Key == name && len(h.Value) > 0 {
				return string(h.Value), nil
			}
		}
		return "", fmt.Errorf("idemkafka: record %s/%d@%d has no header %q: %w", r.Topic, r.Partition, r.Offset, name, ErrNoKey)
	}
}

// WithKey sets the key of a record (default Offset, its topic, partition
// and offset). Use an event ID the producer sets (Header, or a field of the
// value) to handle once an event that was produced twice. The function
// must depend on the record alone: a record never changes, so an error, or
// "", is final (ErrNoKey): the record is logged and committed without
// running fn.
func WithKey(key func(r *kgo.Record) (string, error)) Option {
	return func(c *config) { c.key = key }
}

// WithKeyPrefix sets the prefix of every key (default DefaultKeyPrefix, to
// which Consume adds the consumer group). Give each consumer that shares a
// table a prefix of its own, fixed in code: two consumers of one topic
// under one prefix skip each other's records.
func WithKeyPrefix(prefix string) Option {
	return func(c *config) { c.prefix, c.prefixSet = prefix, true }
}

// WithRetention sets how long a handled record is remembered, counted from
// completion (default DefaultRetention, 24 hours; it must be positive). A
// redelivery after it runs fn again: make it longer than your redelivery
// horizon, such as the longest a consumer group may stay behind, or a
// reset of its offsets to an earlier point.
func WithRetention(retention time.Duration) Option {
	return func(c *config) { c.retention = retention }
}

// WithLease sets how long a record's claim is exclusive (default
// DefaultLease; at least 100ms), extended every third of it while fn runs.
// It is what holds off another consumer when this one dies mid-handler:
// the record is tried again there once the lease has run out.
func WithLease(lease time.Duration) Option {
	return func(c *config) { c.lease = lease }
}

// WithConcurrency sets how many partitions of a fetch Consume handles at
// once (default DefaultConcurrency; at least 1). The records of one
// partition are always handled one after the other, in offset order.
func WithConcurrency(n int) Option {
	return func(c *config) { c.concurrency = n }
}

// WithBackoff sets how long Consume pauses a partition whose record failed
// (it is rewound to that record and fetched again after the pause): first
// after the first failure, doubling with each failure of the partition in
// a row up to limit (defaults DefaultMinBackoff and DefaultMaxBackoff;
// 0 < first <= limit).
func WithBackoff(first, limit time.Duration) Option {
	return func(c *config) { c.minBackoff, c.maxBackoff = first, limit }
}

// WithOnReplay sets a function called, with the record and its full key,
// whenever a record is found handled before and fn is not run: for metrics
// and logs.
func WithOnReplay(fn func(ctx context.Context, r *kgo.Record, key string)) Option {
	return func(c *config) { c.onReplay = fn }
}

// WithLogger sets where failures are reported: records tried again,
// records committed without running fn, commits that failed (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}
