package idemtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// Faulty is an idem.Store that passes each call to Store through the Hook
// set for its operation, so a test can lose a request or a response, fail
// a call, delay it, or run a competitor between the write and its answer. Calls of an operation with no hook go straight to Store. It is
// safe for concurrent use; hooks may be set and cleared while calls run.
type Faulty struct {
	Store idem.Store

	mu    sync.RWMutex
	hooks map[string]Hook
	calls [len(opNames)]atomic.Int64
}

// A Hook stands between a caller and the wrapped store for one call. send
// passes the call to the wrapped store and returns its error; each call of
// send sends the call again, and a hook may keep it and send late (after a
// competitor's write). The caller gets the error the hook returns, with the
// results of the last send if that error is nil, and zero results
// otherwise (or if the hook never sent), as a Store returns on error.
type Hook func(ctx context.Context, c Call, send func() error) error

// Call describes one call to a Faulty, for its hook.
type Call struct {
	Op      string        // "Get", "PutIfAbsent", "CompareAndSwap", "CompareAndDelete" or "Upsert"
	Key     string        // the call's key
	Value   []byte        // the value written (PutIfAbsent, CompareAndSwap, Upsert)
	Version int64         // the version given (CompareAndSwap, CompareAndDelete, Upsert)
	TTL     time.Duration // the ttl given (PutIfAbsent, CompareAndSwap, Upsert)
	N       int           // 1 for the first call of Op on this Faulty, 2 for the second, ...
}

var _ idem.Store = (*Faulty)(nil)

// NewFaulty wraps s, with no hooks set.
func NewFaulty(s idem.Store) *Faulty { return &Faulty{Store: s, hooks: map[string]Hook{}} }

// On sets the hook for every later call of op, one of the five Store
// method names ("Get", "PutIfAbsent", "CompareAndSwap", "CompareAndDelete",
// "Upsert"); a nil h clears it. On panics on any other op.
func (f *Faulty) On(op string, h Hook) {
	opIndex(op)
	f.mu.Lock()
	defer f.mu.Unlock()
	if h == nil {
		delete(f.hooks, op)
		return
	}
	f.hooks[op] = h
}

func opIndex(op string) int {
	for i, name := range opNames {
		if name == op {
			return i
		}
	}
	panic(fmt.Sprintf("idemtest: Faulty.On: unknown operation %q", op))
}

// call numbers c, then runs it through op's hook, or sends it.
func (f *Faulty) call(ctx context.Context, c Call, send func() error) error {
	c.N = int(f.calls[opIndex(c.Op)].Add(1))
	f.mu.RLock()
	h := f.hooks[c.Op]
	f.mu.RUnlock()
	if h == nil {
		return send()
	}
	return h(ctx, c, send)
}

// zeroOnError returns it, or the zero Item if err is not nil.
func zeroOnError(it idem.Item, err error) idem.Item {
	if err != nil {
		return idem.Item{}
	}
	return it
}

// Get implements idem.Store.
func (f *Faulty) Get(ctx context.Context, key string) (it idem.Item, err error) {
	err = f.call(ctx, Call{Op: "Get", Key: key}, func() (err error) {
		it, err = f.Store.Get(ctx, key)
		return err
	})
	return zeroOnError(it, err), err
}

// PutIfAbsent implements idem.Store.
func (f *Faulty) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (it idem.Item, err error) {
	err = f.call(ctx, Call{Op: "PutIfAbsent", Key: key, Value: value, TTL: ttl}, func() (err error) {
		it, err = f.Store.PutIfAbsent(ctx, key, value, ttl)
		return err
	})
	return zeroOnError(it, err), err
}

// CompareAndSwap implements idem.Store.
func (f *Faulty) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (it idem.Item, err error) {
	err = f.call(ctx, Call{Op: "CompareAndSwap", Key: key, Value: value, Version: version, TTL: ttl}, func() (err error) {
		it, err = f.Store.CompareAndSwap(ctx, key, version, value, ttl)
		return err
	})
	return zeroOnError(it, err), err
}

// CompareAndDelete implements idem.Store.
func (f *Faulty) CompareAndDelete(ctx context.Context, key string, version int64) error {
	return f.call(ctx, Call{Op: "CompareAndDelete", Key: key, Version: version}, func() error {
		return f.Store.CompareAndDelete(ctx, key, version)
	})
}

// Upsert implements idem.Store.
func (f *Faulty) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (it idem.Item, applied bool, err error) {
	err = f.call(ctx, Call{Op: "Upsert", Key: key, Value: value, Version: version, TTL: ttl}, func() (err error) {
		it, applied, err = f.Store.Upsert(ctx, key, value, version, ttl)
		return err
	})
	return zeroOnError(it, err), applied && err == nil, err
}

// errLost and errDropped are the driver errors of a response Lose dropped
// and of a call Drop did not send.
var (
	errLost    = errors.New("idemtest: response lost")
	errDropped = errors.New("idemtest: request lost")
)

// Lose sends the call, then drops its response, as a connection that
// breaks after the request is made: the caller gets an error matching
// idem.ErrUnknownOutcome, whether or not the call applied. To run a
// competitor in the gap, or to lose the response of a late send, a hook
// calls Lose with a send of its own:
//
//	f.On("CompareAndSwap", func(ctx context.Context, c idemtest.Call, send func() error) error {
//		return idemtest.Lose(ctx, c, func() error { send(); return competitor(ctx) })
//	})
func Lose(ctx context.Context, c Call, send func() error) error {
	send()
	return kernel.Unknown(c.Key, c.Op, errLost)
}

// Drop does not send the call and returns an error matching
// idem.ErrUnknownOutcome, as a request lost on its way, or a timeout before
// the database saw it: the caller cannot tell it from Lose.
func Drop(ctx context.Context, c Call, send func() error) error {
	return kernel.Unknown(c.Key, c.Op, errDropped)
}

// Resend sends the call, and if it succeeded, sends it again and returns
// the second answer, as a driver or SDK that retries a request whose
// response it lost after the write applied: the second attempt usually
// finds its condition false because of the first.
func Resend(ctx context.Context, c Call, send func() error) error {
	if err := send(); err != nil {
		return err
	}
	return send()
}

// Fail returns a hook that does not send the call and returns err.
func Fail(err error) Hook {
	return func(context.Context, Call, func() error) error { return err }
}

// Times returns a hook that runs h for the first n calls it sees and sends
// every later call unchanged. Its count is its own, not Call.N: it starts
// when the hook is set.
func Times(n int, h Hook) Hook {
	var seen atomic.Int64
	return func(ctx context.Context, c Call, send func() error) error {
		if seen.Add(1) > int64(n) {
			return send()
		}
		return h(ctx, c, send)
	}
}
