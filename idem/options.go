package idem

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/idemkit/idemkit/idem/event"
)

// The defaults of the options below.
const (
	defaultRetention = 24 * time.Hour   // WithRetention
	defaultLease     = 30 * time.Second // WithLease
	defaultAttempts  = 10               // WithAttempts, Counter.Attempts
	defaultWindow    = 1000             // Counter.Window
)

// Option configures a claim: Do, Claim and Once. When an option is given
// twice, the last one wins.
type Option func(*config)

// UpdateOption configures Update. When an option is given twice, the last
// one wins.
type UpdateOption func(*updateConfig)

type config struct {
	retention   time.Duration
	lease       time.Duration
	heartbeat   time.Duration // 0: lease/3
	noHeartbeat bool
	wait        time.Duration
	fingerprint []byte
	now         func() time.Time
	prefix      string
	commit      commitFunc
	cache       *Cache
	events      func(context.Context, event.Event) // WithEvents
	op          string                             // the entry point, for events
}

type updateConfig struct {
	expiry   time.Duration
	attempts int
	events   func(context.Context, event.Event) // WithUpdateEvents
}

// WithRetention sets how long the answer for a key is kept, counted from
// completion (default 24 hours). A duplicate that arrives later runs
// again. A claim in progress is kept until its lease passes plus the
// retention, so a duplicate never finds it gone while its owner may still
// run; a released claim is kept for the retention. retention must be
// positive.
func WithRetention(retention time.Duration) Option {
	return func(c *config) { c.retention = retention }
}

// WithLease sets how long a claim stays exclusive without news from its
// owner (default 30 seconds). Do extends the lease while fn runs, so the
// lease bounds how long a crashed owner blocks its key, not how long fn may
// run. lease must be positive.
func WithLease(lease time.Duration) Option {
	return func(c *config) { c.lease = lease }
}

// WithHeartbeat sets how often Do extends its lease while fn runs (default:
// a third of the lease). every must be positive and at most half the lease,
// so that one slow or lost extension does not let the lease pass.
func WithHeartbeat(every time.Duration) Option {
	return func(c *config) { c.heartbeat, c.noHeartbeat = every, false }
}

// WithoutHeartbeat makes Do never extend its lease: the lease must then
// outlast fn, or a duplicate takes the key over while fn still runs.
func WithoutHeartbeat() Option {
	return func(c *config) { c.heartbeat, c.noHeartbeat = 0, true }
}

// WithWait makes a duplicate wait up to d for the call in flight to finish,
// instead of returning ErrInProgress at once (default 0: no wait). While it
// waits it polls the store with backoff, and takes the key over if its
// owner's lease passes. d must not be negative.
func WithWait(d time.Duration) Option {
	return func(c *config) { c.wait = d }
}

// WithFingerprint records a fingerprint of the request with the key. A
// later call with the same key and a different fingerprint gets ErrMismatch
// instead of the stored answer. See Fingerprint for a helper. Fingerprints
// are compared byte for byte, an absent one included.
func WithFingerprint(fp []byte) Option {
	return func(c *config) { c.fingerprint = append([]byte(nil), fp...) }
}

// WithClock sets the clock used for leases (default time.Now). Expiry is
// decided by the store's own clock.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithKeyPrefix prefixes the key, so keys stay stable when code moves and
// different uses of one store never collide. Example:
// WithKeyPrefix("payments/charge/").
func WithKeyPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithCache answers duplicates from c when it holds their key's finished
// answer, with no store call, and adds the answers this call reads or
// writes to it. See Cache for what a cache cannot see.
func WithCache(c *Cache) Option {
	return func(cfg *config) { cfg.cache = c }
}

// WithCommit makes the claim's completion (Lease.Complete, and so the end
// of Do and Once) go through commit instead of the store's CompareAndSwap,
// so that a backend can commit other writes atomically with it (dynamo.DoTx
// commits the caller's own writes in the same transaction); extensions,
// releases and stored permanent errors still go to the store.
//
// commit is called with the claim's key, its current version, the encoded
// record and its time to live, and must act as Store.CompareAndSwap of key
// at version would: apply everything or nothing, and only if the key still
// holds version; on success return the new item; if the key no longer holds
// version, return a *ConflictError carrying the current item (Exists false
// if absent); when it cannot tell whether it applied, an error matching
// ErrUnknownOutcome (the lease then settles the outcome by sending it
// again: the version condition lets at most one copy apply). Any other
// error must mean that nothing was written: Do then releases the key, so a
// retry runs fn again, and returns the error; one matching ErrInvalid (the
// write refused as too large or malformed) stores a permanent
// CodeResultNotStored error instead, as for Do.
func WithCommit(commit func(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (Item, error)) Option {
	return func(c *config) { c.commit = commit }
}

// commitFunc is what WithCommit takes.
type commitFunc = func(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (Item, error)

// WithExpiry makes each write of Update expire d after it is made (default:
// never). d must be positive.
func WithExpiry(d time.Duration) UpdateOption {
	return func(c *updateConfig) { c.expiry = d }
}

// WithAttempts sets how many CompareAndSwap attempts Update makes under
// contention before it gives up with ErrConflict (default 10). n must be at
// least 1.
func WithAttempts(n int) UpdateOption {
	return func(c *updateConfig) { c.attempts = n }
}

func newConfig(key string, opts []Option) (*config, string, error) {
	c := &config{retention: defaultRetention, lease: defaultLease, now: time.Now}
	for _, o := range opts {
		if o == nil {
			return nil, "", invalid(key, "an option is nil")
		}
		o(c)
	}
	full := c.prefix + key
	if err := checkKey(full); err != nil {
		return nil, "", err
	}
	switch {
	case c.retention <= 0:
		return nil, "", invalid(full, fmt.Sprintf("retention %v is not positive", c.retention))
	case c.lease <= 0:
		return nil, "", invalid(full, fmt.Sprintf("lease %v is not positive", c.lease))
	case c.wait < 0:
		return nil, "", invalid(full, fmt.Sprintf("wait %v is negative", c.wait))
	case c.heartbeat < 0:
		return nil, "", invalid(full, fmt.Sprintf("heartbeat %v is negative (WithoutHeartbeat turns it off)", c.heartbeat))
	case c.heartbeat > c.lease/2:
		return nil, "", invalid(full, fmt.Sprintf("heartbeat %v is over half the lease %v: one late extension would let the lease pass", c.heartbeat, c.lease))
	case c.now == nil:
		return nil, "", invalid(full, "clock is nil")
	}
	return c, full, nil
}

func newUpdateConfig(key string, opts []UpdateOption) (*updateConfig, error) {
	c := &updateConfig{attempts: defaultAttempts}
	for _, o := range opts {
		if o == nil {
			return nil, invalid(key, "an option is nil")
		}
		o(c)
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	switch {
	case c.expiry < 0:
		return nil, invalid(key, fmt.Sprintf("expiry %v is negative", c.expiry))
	case c.attempts < 1:
		return nil, invalid(key, fmt.Sprintf("attempts %d is below 1", c.attempts))
	}
	return c, nil
}

// heartbeatEvery is the interval of Do's lease heartbeat, or 0 for none.
func (c *config) heartbeatEvery() time.Duration {
	switch {
	case c.noHeartbeat:
		return 0
	case c.heartbeat == 0:
		return c.lease / 3
	}
	return c.heartbeat
}

// inProgressTTL is the expiry of an in-progress record whose lease runs for
// lease from now: the lease plus the retention, so the record outlives its
// lease whatever the retention.
func (c *config) inProgressTTL(lease time.Duration) time.Duration {
	return lease + c.retention
}

// checkKey checks a key as every backend does: non-empty, valid UTF-8.
func checkKey(key string) error {
	if key == "" {
		return invalid(key, "key is empty")
	}
	if !utf8.ValidString(key) {
		return invalid(key, "key is not valid UTF-8")
	}
	return nil
}
