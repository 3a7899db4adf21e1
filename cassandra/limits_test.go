package cassandra_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestLimitsMatchMemstore: memstore.CassandraLimits, copied into memstore
// (which cannot import cassandra), refuse exactly what a cassandra.Store
// with the default options refuses: the largest key, value and ttl one
// takes the other takes (and Cassandra stores), and one byte or nanosecond
// more is refused by both.
func TestLimitsMatchMemstore(t *testing.T) {
	t.Parallel()
	l := memstore.CassandraLimits
	if l.MaxKeyBytes != cassandra.MaxKeySize || l.MaxValueBytes != cassandra.DefaultMaxValueSize || l.MaxTTL != cassandra.MaxTTL || l.MaxItemBytes != 0 {
		t.Errorf("memstore.CassandraLimits = %+v, want MaxKeyBytes %d, MaxValueBytes %d, MaxTTL %v and no item limit",
			l, cassandra.MaxKeySize, cassandra.DefaultMaxValueSize, cassandra.MaxTTL)
	}
	session, ks := testenv.Cassandra(t)
	c := newStore(t, session, newTable(t, session, ks))
	m := memstore.New(memstore.WithLimits(l))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	key := strings.Repeat("k", cassandra.MaxKeySize)
	for _, tc := range []struct {
		name    string
		key     string
		value   int
		ttl     time.Duration
		refused bool
	}{
		{"largest key and value", key, cassandra.DefaultMaxValueSize, time.Minute, false},
		{"largest non-ASCII key", "k" + strings.Repeat("ж", cassandra.MaxKeySize/2), 1, time.Minute, false},
		{"key one byte more", key + "k", 1, time.Minute, true},
		{"value one byte more", "v", cassandra.DefaultMaxValueSize + 1, time.Minute, true},
		{"ttl over MaxTTL", "t", 1, cassandra.MaxTTL + time.Nanosecond, true},
	} {
		for name, s := range map[string]idem.Store{"cassandra": c, "memstore": m} {
			_, err := s.PutIfAbsent(ctx, tc.key, make([]byte, tc.value), tc.ttl)
			if got := errors.Is(err, idem.ErrInvalid); got != tc.refused || (!tc.refused && err != nil) {
				t.Errorf("%s: %s PutIfAbsent: got %v, want refused %v", tc.name, name, err, tc.refused)
			}
			if _, err := s.Get(ctx, tc.key); errors.Is(err, idem.ErrInvalid) != (tc.refused && len(tc.key) > cassandra.MaxKeySize) {
				t.Errorf("%s: %s Get: %v", tc.name, name, err)
			}
		}
	}
}
