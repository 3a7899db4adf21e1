package idemtest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/idemkit/idemkit/idem"
)

// Counts is how many times each Store operation was called.
type Counts struct {
	Get, PutIfAbsent, CompareAndSwap, CompareAndDelete, Upsert int64
}

// Writes is the number of conditional writes (everything but Get).
func (c Counts) Writes() int64 {
	return c.PutIfAbsent + c.CompareAndSwap + c.CompareAndDelete + c.Upsert
}

// Total is the number of calls of any kind.
func (c Counts) Total() int64 { return c.Get + c.Writes() }

// Counting is an idem.Store that counts the calls it passes to Store. It is
// safe for concurrent use.
type Counting struct {
	Store idem.Store

	get, put, cas, cad, upsert atomic.Int64
}

var _ idem.Store = (*Counting)(nil)

// NewCounting wraps s.
func NewCounting(s idem.Store) *Counting { return &Counting{Store: s} }

// Counts returns the counts so far.
func (c *Counting) Counts() Counts {
	return Counts{
		Get:              c.get.Load(),
		PutIfAbsent:      c.put.Load(),
		CompareAndSwap:   c.cas.Load(),
		CompareAndDelete: c.cad.Load(),
		Upsert:           c.upsert.Load(),
	}
}

// Reset sets every count to zero.
func (c *Counting) Reset() {
	for _, n := range []*atomic.Int64{&c.get, &c.put, &c.cas, &c.cad, &c.upsert} {
		n.Store(0)
	}
}

// Get implements idem.Store.
func (c *Counting) Get(ctx context.Context, key string) (idem.Item, error) {
	c.get.Add(1)
	return c.Store.Get(ctx, key)
}

// PutIfAbsent implements idem.Store.
func (c *Counting) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	c.put.Add(1)
	return c.Store.PutIfAbsent(ctx, key, value, ttl)
}

// CompareAndSwap implements idem.Store.
func (c *Counting) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	c.cas.Add(1)
	return c.Store.CompareAndSwap(ctx, key, version, value, ttl)
}

// CompareAndDelete implements idem.Store.
func (c *Counting) CompareAndDelete(ctx context.Context, key string, version int64) error {
	c.cad.Add(1)
	return c.Store.CompareAndDelete(ctx, key, version)
}

// Upsert implements idem.Store.
func (c *Counting) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	c.upsert.Add(1)
	return c.Store.Upsert(ctx, key, value, version, ttl)
}
