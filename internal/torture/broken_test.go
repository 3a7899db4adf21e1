package torture

import (
	"context"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
)

// overwriting is a broken store whose PutIfAbsent overwrites a key that
// exists: a claim then succeeds over a completed record.
type overwriting struct{ idem.Store }

func (s overwriting) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	if cur, err := s.Get(ctx, key); err == nil {
		return s.CompareAndSwap(ctx, key, cur.Version, value, ttl)
	}
	return s.Store.PutIfAbsent(ctx, key, value, ttl)
}

// forgetful is a broken store that acknowledges the write of a completed
// record without making it: the claim stays in progress, and after its
// lease the next caller runs fn again.
type forgetful struct{ idem.Store }

func (s forgetful) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	// A completed record: the second byte of idem's binary format.
	if len(value) >= 2 && value[0] == 0x01 && value[1] == 'c' {
		return idem.Item{Key: key, Value: value, Version: version + 1}, nil
	}
	return s.Store.CompareAndSwap(ctx, key, version, value, ttl)
}

// TestHarnessCatchesBrokenStores runs the whole harness, in process, on
// two broken stores and requires it to report what they break: a torture
// run that cannot fail proves nothing.
func TestHarnessCatchesBrokenStores(t *testing.T) {
	p := NewPlan(CI, "memstore", 1)
	p.DoKeys, p.OnceEvents, p.Counters, p.CounterOps, p.Children, p.Workers = 80, 20, 2, 20, 2, 8
	cases := []struct {
		name  string
		store idem.Store
		check func(Figures) bool
		want  string
	}{
		{"PutIfAbsent overwrites", overwriting{memstore.New()},
			func(f Figures) bool { return f.DoubleExecutions > 0 && f.SplitAnswers > 0 },
			"double executions and split answers"},
		{"completion acknowledged, not written", forgetful{memstore.New()},
			func(f Figures) bool { return f.DoubleExecutions > 0 && f.LostCompletions > 0 },
			"double executions and lost completions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := runTorture(t, Backend{Kind: "memory", Name: "broken memstore"}, p, Options{Store: tc.store})
			if f.Violations == 0 || !tc.check(f) {
				t.Errorf("the run reported %d violations (%+v); want %s", f.Violations, f.Report, tc.want)
			}
		})
	}
}
