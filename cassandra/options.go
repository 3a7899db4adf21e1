package cassandra

import (
	"fmt"
	"math"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// Defaults of the options below.
const (
	// DefaultMaxValueSize is the largest value a Store accepts unless
	// WithMaxValueSize says otherwise: 1 MiB.
	DefaultMaxValueSize = 1 << 20
	// DefaultResolveTimeout bounds how long a Store spends settling a write
	// whose outcome is unknown: 10s, enough for one SERIAL read to time out
	// on the server (read_request_timeout, 5s by default) and be retried.
	DefaultResolveTimeout = 10 * time.Second
)

// Limits imposed by Cassandra.
const (
	// MaxKeySize is the largest key in bytes: a partition key is at most
	// 65535 bytes.
	MaxKeySize = 1<<16 - 1
	// MaxValueSizeLimit is the largest value WithMaxValueSize accepts: a
	// mutation must fit in half a commit log segment (16 MiB with the
	// default 32 MiB segments), with room for the key and the other cells.
	MaxValueSizeLimit = 15 << 20
	// MaxTTL is the longest ttl Cassandra stores: 20 years. A ttl must
	// also end by 2038-01-18T03:14:06Z, a day before the latest expiration
	// Cassandra 5.0 stores in its default storage_compatibility_mode
	// (32-bit seconds): longer ones are rejected with an error matching
	// idem.ErrInvalid before anything is sent.
	MaxTTL = 630720000 * time.Second
)

// Cassandra keeps a cell's expiration as 32-bit seconds (unless every node
// runs with storage_compatibility_mode: NONE) and refuses a TTL that ends
// after serverExpiryLimit with an InvalidRequest. The server counts a TTL
// from its own clock, so the Store stops expirySkew short of that: a server
// clock ahead of the client's by less than that still accepts the write.
var (
	serverExpiryLimit = time.Unix(math.MaxInt32-1, 0).UTC() // 2038-01-19T03:14:06Z
	latestExpiry      = serverExpiryLimit.Add(-expirySkew)
)

const expirySkew = 24 * time.Hour

// Option configures a Store. Options are checked by New and CreateTable,
// which reject invalid values and combinations with an error.
type Option func(*config)

type config struct {
	serial         gocql.Consistency
	commit         gocql.Consistency
	read           gocql.Consistency
	readSet        bool
	maxValue       int
	resolveTimeout time.Duration

	exec executor         // tests: replaces the gocql adapter
	now  func() time.Time // tests: the clock
}

func defaultConfig() config {
	return config{
		serial:         gocql.Serial,
		commit:         gocql.Quorum,
		maxValue:       DefaultMaxValueSize,
		resolveTimeout: DefaultResolveTimeout,
		now:            time.Now,
	}
}

// WithSerialConsistency sets the consistency of the Paxos phase of every
// lightweight transaction, and of the SERIAL reads that settle a write whose
// outcome is unknown: gocql.Serial (the default) or gocql.LocalSerial. It is
// one setting on purpose: mixing SERIAL and LOCAL_SERIAL on the same data is
// the most common cause of linearizability violations in Cassandra. Use
// LocalSerial only when every writer of a key stays in one datacenter.
func WithSerialConsistency(c gocql.Consistency) Option {
	return func(cfg *config) { cfg.serial = c }
}

// WithCommitConsistency sets the consistency of the commit phase of every
// lightweight transaction: gocql.Quorum by default; gocql.LocalQuorum for a
// datacenter-local setup (with WithSerialConsistency(gocql.LocalSerial)).
// Any non-serial level is accepted. Reads through the Store are SERIAL by
// default and see every committed write whatever this level is.
func WithCommitConsistency(c gocql.Consistency) Option {
	return func(cfg *config) { cfg.commit = c }
}

// WithReadConsistency sets the consistency of Get. The default is the serial
// consistency (SERIAL unless WithSerialConsistency says LOCAL_SERIAL): a
// linearizable read that also finishes any write still in flight on the key.
// A serial level must equal the serial consistency. A non-serial level such
// as gocql.LocalQuorum makes Get cheaper (one round trip instead of a Paxos
// round) but it may miss a write whose Paxos round has not committed yet:
// use it only for reads that are hints. The writes never rely on Get.
func WithReadConsistency(c gocql.Consistency) Option {
	return func(cfg *config) { cfg.read, cfg.readSet = c, true }
}

// WithMaxValueSize sets the largest value the Store accepts, in bytes:
// DefaultMaxValueSize (1 MiB) by default, at most MaxValueSizeLimit. Larger
// values are rejected with an error matching idem.ErrInvalid before anything
// is sent. Cassandra warns about partitions over 100 MiB and batches over a
// few KiB, and every Paxos round reads and writes the whole row: keep values
// small.
func WithMaxValueSize(n int) Option {
	return func(cfg *config) { cfg.maxValue = n }
}

// WithResolveTimeout bounds the time the Store spends settling a write whose
// outcome is unknown (a write timeout, CAS_WRITE_UNKNOWN, a lost response):
// the SERIAL read, tried up to three times, that looks for the write's own
// write_id. The default is DefaultResolveTimeout (10s). The read runs even
// when the caller's context is already done, detached from its
// cancellation, because an unsettled write is worse than a late answer.
// The write itself is never sent again.
func WithResolveTimeout(d time.Duration) Option {
	return func(cfg *config) { cfg.resolveTimeout = d }
}

// withExecutor replaces the gocql adapter; tests use it to inject faults.
func withExecutor(e executor) Option {
	return func(cfg *config) { cfg.exec = e }
}

// withClock replaces time.Now for expiry: expires_at, reads and conditions.
// Tests use it. Fresh versions keep the process's clock (see PutIfAbsent).
func withClock(now func() time.Time) Option {
	return func(cfg *config) { cfg.now = now }
}

func (cfg *config) apply(opts []Option) error {
	for _, o := range opts {
		if o != nil {
			o(cfg)
		}
	}
	if cfg.serial != gocql.Serial && cfg.serial != gocql.LocalSerial {
		return fmt.Errorf("cassandra: serial consistency must be SERIAL or LOCAL_SERIAL, not %v", cfg.serial)
	}
	if isSerial(cfg.commit) {
		return fmt.Errorf("cassandra: commit consistency %v is a serial level; use QUORUM or LOCAL_QUORUM", cfg.commit)
	}
	if !knownConsistency(cfg.commit) {
		return fmt.Errorf("cassandra: unknown commit consistency %v", cfg.commit)
	}
	if !cfg.readSet {
		cfg.read = cfg.serial
	}
	if !knownConsistency(cfg.read) {
		return fmt.Errorf("cassandra: unknown read consistency %v", cfg.read)
	}
	if cfg.read == gocql.Any {
		return fmt.Errorf("cassandra: read consistency ANY is not a read level")
	}
	if isSerial(cfg.read) && cfg.read != cfg.serial {
		return fmt.Errorf("cassandra: read consistency %v mixed with serial consistency %v: never mix SERIAL and LOCAL_SERIAL on the same data", cfg.read, cfg.serial)
	}
	if cfg.maxValue < 0 || cfg.maxValue > MaxValueSizeLimit {
		return fmt.Errorf("cassandra: max value size %d is outside 0..%d", cfg.maxValue, MaxValueSizeLimit)
	}
	if cfg.resolveTimeout <= 0 {
		return fmt.Errorf("cassandra: resolve timeout must be positive, not %v", cfg.resolveTimeout)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	return nil
}

func isSerial(c gocql.Consistency) bool { return c == gocql.Serial || c == gocql.LocalSerial }

func knownConsistency(c gocql.Consistency) bool {
	switch c {
	case gocql.Any, gocql.One, gocql.Two, gocql.Three, gocql.Quorum, gocql.All,
		gocql.LocalQuorum, gocql.EachQuorum, gocql.Serial, gocql.LocalSerial, gocql.LocalOne:
		return true
	}
	return false
}
