package kernel

import (
	"sync/atomic"
	"time"

	"github.com/idemkit/idemkit/idem"
)

// lastFresh is the last version FreshVersion returned in this process.
var lastFresh atomic.Int64

// freshBase is the process's start, on both the wall and the monotonic
// clock: fresh versions count from it on the monotonic clock, so a step of
// the wall clock (backwards, or forwards and back) cannot make them slow
// down behind a key's chain of versions.
var freshBase = time.Now()

// FreshVersion returns the version a backend gives an item created by
// PutIfAbsent: the time in microseconds since 1970, raised above every
// version returned before in this process, so two calls never return the
// same version. The time is the wall clock when the process started plus
// the time since on the monotonic clock, so a wall clock stepped back while
// the process runs cannot hold fresh versions back, and no clock a caller
// configures (idem.WithClock, a test's fake clock running ahead) can push them
// ahead of real time for every store in the process.
//
// Fencing rests on it. An incarnation of a key starts at FreshVersion and
// goes up by one per CompareAndSwap; the next incarnation, created after the
// key was deleted or expired, starts above it as long as (a) the old one
// made fewer CompareAndSwaps than the microseconds it lived (a round trip
// takes far longer) and (b) the clock of the process that creates the new
// incarnation is not behind the clock of the process that created the old
// one by more than the time between the two creations (a create that is
// delayed on its way to the database counts as that much lag). Claims never
// delete their records (a released claim stays as a tombstone), so for Do,
// Claim and Once that time is at least the retention (idem.WithRetention).
func FreshVersion() int64 {
	v := max(freshBase.UnixMicro()+time.Since(freshBase).Microseconds(), 1)
	for {
		last := lastFresh.Load()
		next := max(v, last+1)
		if lastFresh.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Expired reports whether it has expired at now: a Store answers an expired
// item as absent. An item with a zero ExpiresAt never expires.
func Expired(it idem.Item, now time.Time) bool {
	return !it.ExpiresAt.IsZero() && !now.Before(it.ExpiresAt)
}
