// Package memstore is an in-memory idem.Store: the embedded default for
// demos, local runs and unit tests.
//
// PutIfAbsent starts a key above every version the store has ever held, so
// versions never come back after a delete or an expiry, with no assumption
// about the clock.
//
// It is safe for concurrent use, honours TTLs exactly (an expired item is
// absent for every operation) and runs no background goroutine: expired items
// are dropped when touched and swept, amortised, as writes go by. It passes
// idemtest.Run. It keeps nothing across restarts, so it gives effectively-once
// behaviour only within one process.
//
// # Limits
//
// By default memstore takes keys and values of any size, which the real
// stores do not: DynamoDB refuses a key over 2048 bytes or an item over
// 400 KB, Cassandra a key over 65535 bytes or (by default) a value over
// 1 MiB. WithLimits(DynamoDBLimits) or WithLimits(CassandraLimits) makes
// memstore refuse exactly what that backend refuses, with the same
// idem.ErrInvalid, so a unit test on memstore fails where production would:
//
//	store := memstore.New(memstore.WithLimits(memstore.DynamoDBLimits))
package memstore

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// Store is an in-memory idem.Store. Create one with New.
type Store struct {
	now    func() time.Time
	limits Limits

	mu         sync.Mutex
	items      map[string]idem.Item
	highest    int64 // the highest version ever stored, for fresh versions
	writes     int   // writes since the last sweep
	afterSweep int   // items left by the last sweep
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for expiry. The default is time.Now. Tests
// use it to move time forward without sleeping.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns an empty Store.
func New(opts ...Option) *Store {
	s := &Store{now: time.Now, items: make(map[string]idem.Item)}
	for _, o := range opts {
		o(s)
	}
	return s
}

var _ idem.Store = (*Store)(nil)

// Len returns the number of live (unexpired) items.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for _, it := range s.items {
		if !kernel.Expired(it, now) {
			n++
		}
	}
	return n
}

// Held returns the number of items held in memory, expired ones not yet
// swept included. Len is the number of live ones.
func (s *Store) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// Get implements idem.Store.
func (s *Store) Get(ctx context.Context, key string) (idem.Item, error) {
	if err := s.check(ctx, key, false, nil, 0); err != nil {
		return idem.Item{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key)
	if !ok {
		return idem.Item{}, idem.ErrNotFound
	}
	return clone(it), nil
}

// PutIfAbsent implements idem.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	if err := s.check(ctx, key, true, value, ttl); err != nil {
		return idem.Item{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.live(key); ok {
		return idem.Item{}, conflict("PutIfAbsent", key, cur, true)
	}
	// Above every version this store ever held, whatever the clock says:
	// in memory, a version never comes back.
	if s.highest == math.MaxInt64 {
		return idem.Item{}, kernel.Invalid(key, "no fresh version is left above the highest version stored")
	}
	return s.put(key, value, max(kernel.FreshVersion(), s.highest+1), ttl), nil
}

// CompareAndSwap implements idem.Store.
func (s *Store) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	if err := s.check(ctx, key, true, value, ttl); err != nil {
		return idem.Item{}, err
	}
	if err := kernel.CheckVersion(key, version); err != nil {
		return idem.Item{}, err
	}
	if version == math.MaxInt64 {
		return idem.Item{}, kernel.Invalid(key, "version would overflow")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.live(key)
	if !ok || cur.Version != version {
		return idem.Item{}, conflict("CompareAndSwap", key, cur, ok)
	}
	return s.put(key, value, version+1, ttl), nil
}

// CompareAndDelete implements idem.Store.
func (s *Store) CompareAndDelete(ctx context.Context, key string, version int64) error {
	if err := s.check(ctx, key, false, nil, 0); err != nil {
		return err
	}
	if err := kernel.CheckVersion(key, version); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.live(key)
	if !ok || cur.Version != version {
		return conflict("CompareAndDelete", key, cur, ok)
	}
	delete(s.items, key)
	return nil
}

// Upsert implements idem.Store.
func (s *Store) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	if err := s.check(ctx, key, true, value, ttl); err != nil {
		return idem.Item{}, false, err
	}
	if err := kernel.CheckUpsertVersion(key, version); err != nil {
		return idem.Item{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.live(key); ok && cur.Version >= version {
		return clone(cur), false, nil
	}
	return s.put(key, value, version, ttl), true, nil
}

// live returns the unexpired item at key, dropping it if it has expired.
// s.mu must be held.
func (s *Store) live(key string) (idem.Item, bool) {
	it, ok := s.items[key]
	if !ok {
		return idem.Item{}, false
	}
	if kernel.Expired(it, s.now()) {
		delete(s.items, key)
		return idem.Item{}, false
	}
	return it, true
}

// put stores a copy of value and returns a copy of the new item. s.mu must be
// held.
func (s *Store) put(key string, value []byte, version int64, ttl time.Duration) idem.Item {
	it := idem.Item{Key: key, Value: append([]byte{}, value...), Version: version}
	s.highest = max(s.highest, version)
	if ttl > 0 {
		it.ExpiresAt = s.now().Add(ttl)
	}
	s.items[key] = it
	s.sweep()
	return clone(it)
}

// sweep drops expired items once the writes since the last sweep reach the
// number of items that sweep left (and at least 1024). A sweep costs at most
// that number plus the writes since, so its cost is amortised O(1) per
// write. s.mu must be held.
func (s *Store) sweep() {
	s.writes++
	if s.writes < max(1024, s.afterSweep) {
		return
	}
	now := s.now()
	for k, it := range s.items {
		if kernel.Expired(it, now) {
			delete(s.items, k)
		}
	}
	s.writes, s.afterSweep = 0, len(s.items)
}

// check checks key, and for a write value and ttl, against the Store's
// limits, then ctx.
func (s *Store) check(ctx context.Context, key string, write bool, value []byte, ttl time.Duration) error {
	if err := kernel.CheckKey(key); err != nil {
		return err
	}
	if err := s.limits.check(key, write, value, ttl); err != nil {
		return err
	}
	return ctx.Err()
}

func conflict(op, key string, cur idem.Item, exists bool) error {
	e := &idem.ConflictError{Key: key, Op: op, Exists: exists}
	if exists {
		e.Current = clone(cur)
	}
	return e
}

func clone(it idem.Item) idem.Item {
	it.Value = append([]byte{}, it.Value...)
	return it
}
