package memstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestLimitsConformance: limits change nothing for input within them.
func TestLimitsConformance(t *testing.T) {
	for name, l := range map[string]memstore.Limits{"dynamodb": memstore.DynamoDBLimits, "cassandra": memstore.CassandraLimits} {
		t.Run(name, func(t *testing.T) {
			idemtest.Run(t, func(t *testing.T) idem.Store { return memstore.New(memstore.WithLimits(l)) })
		})
	}
}

// TestLimits: every operation refuses a key one byte over the limit, and
// every write a value, an item or a ttl over it, with idem.ErrInvalid and
// without storing anything; at the limit it accepts.
func TestLimits(t *testing.T) {
	ctx := context.Background()
	l := memstore.Limits{MaxKeyBytes: 10, MaxValueBytes: 100, MaxItemBytes: 50, ItemOverhead: 5, ValueOverhead: 3, MaxTTL: time.Hour}
	type op func(s *memstore.Store, key string, value []byte, ttl time.Duration) error
	ops := map[string]op{
		"Get": func(s *memstore.Store, key string, _ []byte, _ time.Duration) error {
			_, err := s.Get(ctx, key)
			return err
		},
		"CompareAndDelete": func(s *memstore.Store, key string, _ []byte, _ time.Duration) error {
			return s.CompareAndDelete(ctx, key, 1)
		},
		"PutIfAbsent": func(s *memstore.Store, key string, value []byte, ttl time.Duration) error {
			_, err := s.PutIfAbsent(ctx, key, value, ttl)
			return err
		},
		"CompareAndSwap": func(s *memstore.Store, key string, value []byte, ttl time.Duration) error {
			_, err := s.CompareAndSwap(ctx, key, 1, value, ttl)
			return err
		},
		"Upsert": func(s *memstore.Store, key string, value []byte, ttl time.Duration) error {
			_, _, err := s.Upsert(ctx, key, value, 1, ttl)
			return err
		},
	}
	writes := map[string]bool{"PutIfAbsent": true, "CompareAndSwap": true, "Upsert": true}
	// With a 10-byte key, the largest value is 50-5-10-3 = 32 bytes.
	for _, tc := range []struct {
		name     string
		key      string
		value    int
		ttl      time.Duration
		refused  bool
		onlyRead bool // refused by reads too
	}{
		{"largest key", strings.Repeat("k", 10), 0, 0, false, false},
		{"key one byte over", strings.Repeat("k", 11), 0, 0, true, true},
		{"largest item", strings.Repeat("k", 10), 32, 0, false, false},
		{"item one byte over", strings.Repeat("k", 10), 33, 0, true, false},
		{"longest ttl", "k", 0, time.Hour, false, false},
		{"ttl over", "k", 0, time.Hour + 1, true, false},
	} {
		for name, do := range ops {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				s := memstore.New(memstore.WithLimits(l))
				err := do(s, tc.key, make([]byte, tc.value), tc.ttl)
				refused := tc.refused && (writes[name] || tc.onlyRead)
				if got := errors.Is(err, idem.ErrInvalid); got != refused {
					t.Errorf("got %v, want refused %v", err, refused)
				}
				if refused && s.Held() != 0 {
					t.Errorf("a refused %s stored an item", name)
				}
			})
		}
	}

	// A value limit below the item's.
	s := memstore.New(memstore.WithLimits(memstore.Limits{MaxValueBytes: 4}))
	if _, err := s.PutIfAbsent(ctx, "k", make([]byte, 4), 0); err != nil {
		t.Errorf("a 4-byte value: %v", err)
	}
	if _, err := s.PutIfAbsent(ctx, "k2", make([]byte, 5), 0); !errors.Is(err, idem.ErrInvalid) {
		t.Errorf("a 5-byte value: got %v, want idem.ErrInvalid", err)
	}
	// No limits by default.
	if _, err := memstore.New().PutIfAbsent(ctx, strings.Repeat("k", 1<<17), make([]byte, 1<<21), 100*365*24*time.Hour); err != nil {
		t.Errorf("without limits: %v", err)
	}
}
