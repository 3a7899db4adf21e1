package idem

import (
	"container/list"
	"fmt"
	"reflect"
	"sync"
	"time"
)

// Cache keeps finished answers in this process, so that a duplicate served
// from it makes no store call at all. Create it with NewCache and pass it
// with WithCache to Do, Once and Claim (and to the idemhttp and idemlambda
// constructors); share one Cache among them.
//
// Only answers that never change are cached: completed records, with a
// result or a permanent error, never a claim in progress or released. An
// entry is dropped once its record's expiry passes (by the caller's clock,
// WithClock), and the least recently used entries go first once the Cache
// holds maxItems answers (or maxBytes of results). Entries are keyed
// by store and key (prefix and scope included), and a fingerprint is still
// checked: a different request under a cached key gets ErrMismatch.
//
// A Cache is per process, and sees only what this process wrote or read:
// a record evicted or deleted by hand (or by another process) is still
// answered from the Cache until its entry expires or is pushed out. Do not
// use a Cache where keys are deleted to let work run again. A Store whose
// dynamic type is not comparable (it cannot be a map key) is not cached.
//
// A Cache is safe for concurrent use and starts no goroutines.
type Cache struct {
	mu       sync.Mutex
	maxItems int
	maxBytes int
	bytes    int
	lru      list.List // of *cacheEntry, the most recently used first
	entries  map[cacheKey]*list.Element
}

type cacheKey struct {
	store Store
	key   string
}

type cacheEntry struct {
	key     cacheKey
	rec     record
	expires time.Time // zero: never
	size    int
}

// NewCache returns a Cache that holds at most maxItems answers and, if
// maxBytes is above 0, about maxBytes bytes of them (their results,
// fingerprints and error messages; an answer larger than that is not
// cached); 0 bounds only the number of answers. It panics if maxItems is
// not positive or maxBytes is negative, as a programming error.
func NewCache(maxItems, maxBytes int) *Cache {
	if maxItems <= 0 || maxBytes < 0 {
		panic(fmt.Sprintf("idem: NewCache(%d, %d): want a positive item bound and a byte bound of at least 0", maxItems, maxBytes))
	}
	return &Cache{maxItems: maxItems, maxBytes: maxBytes, entries: map[cacheKey]*list.Element{}}
}

// len returns the number of answers held.
func (c *Cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// cacheable reports whether s can key a map.
func cacheable(s Store) bool {
	return s != nil && reflect.TypeOf(s).Comparable()
}

// get returns the cached answer for key of s, if it is held and has not
// expired at now. The record is the Cache's: never change it.
func (c *Cache) get(s Store, key string, now time.Time) *record {
	if c == nil || !cacheable(s) {
		return nil
	}
	k := cacheKey{s, key}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[k]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !e.expires.IsZero() && !now.Before(e.expires) {
		c.remove(el)
		return nil
	}
	c.lru.MoveToFront(el)
	return &e.rec
}

// put caches rec, a completed record of key, which expires at expires
// (zero: never).
func (c *Cache) put(s Store, key string, rec record, expires time.Time) {
	if c == nil || rec.Status != statusCompleted || !cacheable(s) {
		return
	}
	size := len(key) + len(rec.Result) + len(rec.Fingerprint)
	if rec.Error != nil {
		size += len(rec.Error.Message) + len(rec.Error.Code)
	}
	if c.maxBytes > 0 && size > c.maxBytes {
		return
	}
	k := cacheKey{s, key}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.remove(el)
	}
	c.entries[k] = c.lru.PushFront(&cacheEntry{key: k, rec: rec, expires: expires, size: size})
	c.bytes += size
	for c.lru.Len() > c.maxItems || (c.maxBytes > 0 && c.bytes > c.maxBytes) {
		c.remove(c.lru.Back())
	}
}

// remove drops an entry. c.mu must be held.
func (c *Cache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.entries, e.key)
	c.bytes -= e.size
}
