package storetest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// HangUp wraps a Store for tests of a caller that gives up while a write is
// in flight. It delegates every call and then, once, after the write named
// by On ("PutIfAbsent" or "CompareAndSwap"), runs the hook set with Arm
// before it answers: the write has been applied and its answer is on its
// way. If the call's context has ended meanwhile, it answers as a store
// whose caller gave up mid-write does: the outcome is unknown.
type HangUp struct {
	idem.Store
	On   string
	hook atomic.Pointer[func()]
}

// Arm sets the hook the next write named by On runs.
func (s *HangUp) Arm(hook func()) { s.hook.Store(&hook) }

// PutIfAbsent implements idem.Store.
func (s *HangUp) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	it, err := s.Store.PutIfAbsent(ctx, key, value, ttl)
	return s.answer(ctx, "PutIfAbsent", key, it, err)
}

// CompareAndSwap implements idem.Store.
func (s *HangUp) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	it, err := s.Store.CompareAndSwap(ctx, key, version, value, ttl)
	return s.answer(ctx, "CompareAndSwap", key, it, err)
}

func (s *HangUp) answer(ctx context.Context, op, key string, it idem.Item, err error) (idem.Item, error) {
	if op != s.On {
		return it, err
	}
	if hook := s.hook.Swap(nil); hook != nil {
		(*hook)()
	}
	if cerr := ctx.Err(); cerr != nil {
		return idem.Item{}, kernel.Unknown(key, op, cerr)
	}
	return it, err
}
