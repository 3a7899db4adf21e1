package idem_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// faulty wraps a Store and injects failures on the write path. Each fault is
// armed for one call of its operation.
type faulty struct {
	idem.Store

	mu sync.Mutex
	// lost: apply the write, then report ErrUnknownOutcome (the response
	// was lost and the store could not settle it).
	lost map[string]bool
	// resend: apply the write, then send it again and report the second
	// attempt's result, as a driver or SDK retry after a lost response does.
	resend map[string]bool
	// fail: return this error without writing.
	fail map[string]error
}

func newFaulty(s idem.Store) *faulty {
	return &faulty{Store: s, lost: map[string]bool{}, resend: map[string]bool{}, fail: map[string]error{}}
}

func (f *faulty) arm(op string, kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch kind {
	case "lost":
		f.lost[op] = true
	case "resend":
		f.resend[op] = true
	}
}

func (f *faulty) take(op string) (lost, resend bool, fail error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lost, resend, fail = f.lost[op], f.resend[op], f.fail[op]
	delete(f.lost, op)
	delete(f.resend, op)
	return
}

func (f *faulty) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	lost, resend, fail := f.take("PutIfAbsent")
	if fail != nil {
		return idem.Item{}, fail
	}
	it, err := f.Store.PutIfAbsent(ctx, key, value, ttl)
	switch {
	case err != nil:
		return it, err
	case lost:
		return idem.Item{}, kernel.Unknown(key, "PutIfAbsent", errors.New("injected: response lost"))
	case resend:
		return f.Store.PutIfAbsent(ctx, key, value, ttl)
	}
	return it, nil
}

func (f *faulty) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	lost, resend, fail := f.take("CompareAndSwap")
	if fail != nil {
		return idem.Item{}, fail
	}
	it, err := f.Store.CompareAndSwap(ctx, key, version, value, ttl)
	switch {
	case err != nil:
		return it, err
	case lost:
		return idem.Item{}, kernel.Unknown(key, "CompareAndSwap", errors.New("injected: response lost"))
	case resend:
		return f.Store.CompareAndSwap(ctx, key, version, value, ttl)
	}
	return it, nil
}

func (f *faulty) CompareAndDelete(ctx context.Context, key string, version int64) error {
	lost, resend, fail := f.take("CompareAndDelete")
	if fail != nil {
		return fail
	}
	err := f.Store.CompareAndDelete(ctx, key, version)
	switch {
	case err != nil:
		return err
	case lost:
		return kernel.Unknown(key, "CompareAndDelete", errors.New("injected: response lost"))
	case resend:
		return f.Store.CompareAndDelete(ctx, key, version)
	}
	return nil
}

// failingSwaps makes every CompareAndSwap fail while on is set, as a store
// that cannot be reached.
type failingSwaps struct {
	idem.Store
	on atomic.Bool
}

func (f *failingSwaps) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	if f.on.Load() {
		return idem.Item{}, errors.New("injected: store unreachable")
	}
	return f.Store.CompareAndSwap(ctx, key, version, value, ttl)
}
