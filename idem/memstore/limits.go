package memstore

import (
	"time"

	"github.com/idemkit/idemkit/idem/kernel"
)

// Limits are the sizes a backend refuses, so that a test on memstore fails
// on the keys and values the real store would refuse. A zero field is no
// limit. A refused call returns an error matching idem.ErrInvalid, as the
// backend's does, and changes nothing.
//
// Every operation checks the key; the writes (PutIfAbsent, CompareAndSwap,
// Upsert) also check the value, the item and the ttl.
type Limits struct {
	// MaxKeyBytes is the largest key, in bytes.
	MaxKeyBytes int
	// MaxValueBytes is the largest value, in bytes.
	MaxValueBytes int
	// MaxItemBytes is the largest item as the backend counts it:
	// ItemOverhead + the key's bytes, plus ValueOverhead + the value's
	// bytes when the value is not empty.
	MaxItemBytes  int
	ItemOverhead  int
	ValueOverhead int
	// MaxTTL is the longest ttl.
	MaxTTL time.Duration
}

// The limits of idemkit's backends, copied from them (idem depends on the
// standard library only); each backend's tests check that they agree.
var (
	// DynamoDBLimits are those of a dynamo.Store with the default options:
	// a key of at most dynamo.MaxPartitionKeyBytes (2048) and an item of at
	// most dynamo.MaxItemBytes (400 KB), counted with the default attribute
	// names ("pk", "val", "ver", "exp", "tok"), the largest numbers and the
	// 16-byte write token. With WithSortKey or other attribute names, adjust
	// a copy: the key limit is then dynamo.MaxSortKeyBytes (1024).
	DynamoDBLimits = Limits{
		MaxKeyBytes:   2048,
		MaxItemBytes:  400 * 1024,
		ItemOverhead:  len("pk") + len("ver") + 21 + len("exp") + 21 + len("tok") + 16,
		ValueOverhead: len("val"),
	}
	// CassandraLimits are those of a cassandra.Store with the default
	// options: a key of at most cassandra.MaxKeySize (65535 bytes), a value
	// of at most cassandra.DefaultMaxValueSize (1 MiB) and a ttl of at most
	// cassandra.MaxTTL (20 years). The Store also refuses a ttl ending after
	// 2038-01-18, which memstore does not check.
	CassandraLimits = Limits{
		MaxKeyBytes:   1<<16 - 1,
		MaxValueBytes: 1 << 20,
		MaxTTL:        630720000 * time.Second,
	}
)

// WithLimits makes the Store refuse the keys, values and ttls l refuses,
// with an error matching idem.ErrInvalid. By default there are no limits.
//
//	store := memstore.New(memstore.WithLimits(memstore.DynamoDBLimits))
func WithLimits(l Limits) Option {
	return func(s *Store) { s.limits = l }
}

// check checks key (and, for a write, value and ttl) against l.
func (l Limits) check(key string, write bool, value []byte, ttl time.Duration) error {
	if l.MaxKeyBytes > 0 {
		if err := kernel.CheckSize(key, "key", len(key), l.MaxKeyBytes); err != nil {
			return err
		}
	}
	if !write {
		return nil
	}
	if l.MaxValueBytes > 0 {
		if err := kernel.CheckSize(key, "value", len(value), l.MaxValueBytes); err != nil {
			return err
		}
	}
	if l.MaxItemBytes > 0 {
		n := l.ItemOverhead + len(key)
		if len(value) > 0 {
			n += l.ValueOverhead + len(value)
		}
		if err := kernel.CheckSize(key, "item", n, l.MaxItemBytes); err != nil {
			return err
		}
	}
	if l.MaxTTL > 0 && ttl > l.MaxTTL {
		return kernel.Invalid(key, "ttl "+ttl.String()+" is over the limit of "+l.MaxTTL.String())
	}
	return nil
}
