package idem

import (
	"encoding/json"
	"fmt"
	"time"
)

// Defaults for the options below.
const (
	DefaultTTL      = 24 * time.Hour   // how long Do, Claim and Once keep a key
	DefaultLease    = 30 * time.Second // how long a claim is exclusive without a heartbeat
	DefaultAttempts = 10               // CompareAndSwap attempts made by Update and Add
	DefaultWindow   = 1000             // operation IDs remembered by Add
)

// Option configures Do, Claim, Once, Update and Add. Each option says which
// calls it affects; others ignore it. When an option is given twice, the last
// one wins.
type Option func(*config)

// Codec turns Do's result into bytes and back.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSONCodec is the default Codec, encoding/json.
type JSONCodec struct{}

// Marshal implements Codec.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

type config struct {
	ttl         time.Duration
	ttlSet      bool
	lease       time.Duration
	heartbeat   time.Duration // 0: lease/3; negative: none
	wait        time.Duration
	fingerprint []byte
	codec       Codec
	now         func() time.Time
	replayed    *bool
	prefix      string
	attempts    int
	window      int
}

// WithTTL sets how long a key is kept: for Do, Claim and Once, the retention
// of the completed record, counted from completion (default DefaultTTL);
// for Update and Add, the expiry set by each write (default: never). A
// duplicate that arrives after the TTL runs again. ttl must be positive.
//
// A claim in progress is kept until its lease passes plus the retention,
// whatever the retention, so a duplicate never finds it gone while its
// owner may still run; a released claim is kept for the retention.
func WithTTL(ttl time.Duration) Option {
	return func(c *config) { c.ttl, c.ttlSet = ttl, true }
}

// WithLease sets how long a claim stays exclusive without news from its
// owner (Do, Claim, Once; default DefaultLease). Do extends the lease while
// fn runs, so the lease bounds how long a crashed owner blocks its key, not
// how long fn may run. lease must be positive.
func WithLease(lease time.Duration) Option {
	return func(c *config) { c.lease = lease }
}

// WithHeartbeat sets how often Do extends its lease while fn runs (default:
// a third of the lease). The interval must be at most half the lease, so
// that one slow or lost extension does not let the lease pass; a longer one
// is rejected with ErrInvalid. A negative interval turns the heartbeat off,
// so the lease must then outlast fn.
func WithHeartbeat(every time.Duration) Option {
	return func(c *config) {
		c.heartbeat = every
		if every < 0 {
			c.heartbeat = -1
		}
	}
}

// WithWait makes Do, Claim and Once wait up to d for a duplicate in flight
// to finish, instead of returning ErrInProgress at once (default 0: no
// wait). While waiting they poll the store with backoff, and take over the
// key if its owner's lease passes.
func WithWait(d time.Duration) Option {
	return func(c *config) { c.wait = d }
}

// WithFingerprint records a fingerprint of the request with the key (Do,
// Claim, Once). A later call with the same key and a different fingerprint
// gets ErrMismatch instead of the stored result. See Fingerprint for a
// helper. Fingerprints are compared byte for byte, an absent one included.
func WithFingerprint(fp []byte) Option {
	return func(c *config) { c.fingerprint = append([]byte(nil), fp...) }
}

// WithCodec sets how Do stores its result (default JSONCodec).
func WithCodec(codec Codec) Option {
	return func(c *config) { c.codec = codec }
}

// WithClock sets the clock used for leases (default time.Now). Expiry is
// decided by the store's own clock.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithReplayed makes Do and Claim report through *replayed whether the
// result came from the store (true) or from running fn now (false), as
// grpc.Header reports headers.
func WithReplayed(replayed *bool) Option {
	return func(c *config) { c.replayed = replayed }
}

// WithKeyPrefix prefixes every key (all calls), so keys stay stable when
// code moves and different uses of one store never collide. Example:
// WithKeyPrefix("payments/charge/").
func WithKeyPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithAttempts sets how many CompareAndSwap attempts Update and Add make
// under contention before giving up with ErrConflict (default
// DefaultAttempts).
func WithAttempts(n int) Option {
	return func(c *config) { c.attempts = n }
}

// WithWindow sets how many recent operation IDs Add remembers (default
// DefaultWindow). An operation replayed after more than this many newer
// operations is applied again, so size it beyond your redelivery horizon.
func WithWindow(n int) Option {
	return func(c *config) { c.window = n }
}

func newConfig(key string, opts []Option) (*config, string, error) {
	c := &config{
		ttl:      DefaultTTL,
		lease:    DefaultLease,
		codec:    JSONCodec{},
		now:      time.Now,
		attempts: DefaultAttempts,
		window:   DefaultWindow,
	}
	for _, o := range opts {
		o(c)
	}
	full := c.prefix + key
	if err := ValidateKey(full); err != nil {
		return nil, "", err
	}
	switch {
	case c.ttl <= 0:
		return nil, "", &InputError{Key: full, Reason: fmt.Sprintf("ttl %v is not positive", c.ttl)}
	case c.lease <= 0:
		return nil, "", &InputError{Key: full, Reason: fmt.Sprintf("lease %v is not positive", c.lease)}
	case c.wait < 0:
		return nil, "", &InputError{Key: full, Reason: fmt.Sprintf("wait %v is negative", c.wait)}
	case c.attempts < 1:
		return nil, "", &InputError{Key: full, Reason: fmt.Sprintf("attempts %d is below 1", c.attempts)}
	case c.window < 1:
		return nil, "", &InputError{Key: full, Reason: fmt.Sprintf("window %d is below 1", c.window)}
	case c.heartbeat > 0 && c.heartbeat > c.lease/2:
		return nil, "", &InputError{Key: full, Reason: fmt.Sprintf("heartbeat %v is over half the lease %v: one late extension would let the lease pass", c.heartbeat, c.lease)}
	case c.codec == nil:
		return nil, "", &InputError{Key: full, Reason: "codec is nil"}
	case c.now == nil:
		return nil, "", &InputError{Key: full, Reason: "clock is nil"}
	}
	return c, full, nil
}

// heartbeatEvery is the interval of Do's lease heartbeat, or 0 for none.
func (c *config) heartbeatEvery() time.Duration {
	switch {
	case c.heartbeat < 0:
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
	return lease + c.ttl
}

// writeTTL is the expiry Update and Add give each write.
func (c *config) writeTTL() time.Duration {
	if c.ttlSet {
		return c.ttl
	}
	return 0
}
