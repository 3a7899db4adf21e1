package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/idemkit/idemkit/idem"
)

// LargestResult finds, through idem.Do on s, the largest result of
// result(n) that Do stores, by bisection between lo (stored) and hi (not
// stored), and returns it. Each try uses a key of its own under name.
func LargestResult(t *testing.T, ctx context.Context, s idem.Store, name string, lo, hi int, result func(n int) any) int {
	t.Helper()
	do := func(n int) error {
		_, err := idem.Do(ctx, s, largestKey(name, n), func(context.Context) (any, error) { return result(n), nil })
		return err
	}
	if err := do(lo); err != nil {
		t.Fatalf("%s: a %d-byte result: %v", name, lo, err)
	}
	if do(hi) == nil {
		t.Fatalf("%s: a %d-byte result was stored", name, hi)
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if do(mid) == nil {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// ResultNotStored checks that a duplicate of LargestResult's try of size n,
// a result too large for the store, gets the permanent
// idem.CodeResultNotStored answer without running fn.
func ResultNotStored(t *testing.T, ctx context.Context, s idem.Store, name string, n int) {
	t.Helper()
	ran := false
	_, err := idem.Do(ctx, s, largestKey(name, n), func(context.Context) (any, error) { ran = true; return nil, nil })
	var pe *idem.PermanentError
	if !errors.As(err, &pe) || pe.Code != idem.CodeResultNotStored || ran {
		t.Errorf("%s: a duplicate of the %d-byte result: %v (fn ran: %v); want the permanent %s answer", name, n, err, ran, idem.CodeResultNotStored)
	}
}

// largestKey is short and of one length, so the sizes measured through it
// are those the backends document.
func largestKey(name string, n int) string { return fmt.Sprintf("%s/%09d", name[:1], n) }
