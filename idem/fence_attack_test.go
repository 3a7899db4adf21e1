package idem_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/internal/storetest"
)

// Attacks on Lease.Fence, on every Store (memstore and each server).
// Faults come from idemtest.Faulty: Lose sends a write and drops its
// answer (the caller sees an unknown outcome), Drop never sends it.

// TestAttackFenceConcurrentLossyClaimers: claimers race for one key,
// their writes' answers lost or their writes dropped at random. A claimer
// that gets a lease then releases it, deletes its record by hand, or
// abandons it and moves the shared clock past every lease, so that the
// next claimer takes over. Checked: no two leases share a fence; a claim
// that started after another claim returned gets a higher fence; and the
// releases and deletions that succeeded, run one at a time, did so in
// rising fence order. Deletions by hand keep to FreshVersion's bound (see
// deleteByHand).
func TestAttackFenceConcurrentLossyClaimers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, inner idem.Store) {
		seed := rand.Uint64()
		t.Logf("seed %d", seed)
		var rmu sync.Mutex
		rnd := rand.New(rand.NewPCG(seed, 2))
		chance := func(p float64) bool {
			rmu.Lock()
			defer rmu.Unlock()
			return rnd.Float64() < p
		}
		s := idemtest.NewFaulty(inner)
		lossy := func(ctx context.Context, c idemtest.Call, send func() error) error {
			switch {
			case chance(0.25):
				return idemtest.Lose(ctx, c, send)
			case chance(0.05):
				return idemtest.Drop(ctx, c, send)
			}
			return send()
		}
		const key, claimers, rounds = "k", 6, 10
		for _, op := range []string{"CompareAndSwap", "Get"} {
			s.On(op, lossy)
		}
		// A record deleted by hand is started again above its versions only
		// if no create of the key was in flight longer than the record's age
		// (FreshVersion's bound): a create sent before the delete and
		// decided after it (Paxos retries under contention take
		// milliseconds) starts the key below the young record. So a
		// deletion here waits until no PutIfAbsent is in flight; a create
		// sent after it takes its version after the delete.
		var flight sync.Mutex
		idle := sync.NewCond(&flight)
		creating := 0
		s.On("PutIfAbsent", func(ctx context.Context, c idemtest.Call, send func() error) error {
			flight.Lock()
			creating++
			flight.Unlock()
			defer func() {
				flight.Lock()
				if creating--; creating == 0 {
					idle.Broadcast()
				}
				flight.Unlock()
			}()
			return lossy(ctx, c, send)
		})
		deleteByHand := func(version int64) error {
			flight.Lock()
			for creating > 0 {
				idle.Wait()
			}
			flight.Unlock()
			return inner.CompareAndDelete(t.Context(), key, version)
		}
		var offset atomic.Int64 // the shared clock's lead, moved past every lease to let a takeover in
		opts := []idem.Option{
			idem.WithLease(time.Second),
			idem.WithWait(300 * time.Millisecond), // wait out a holder's release
			idem.WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }),
		}

		var mu sync.Mutex
		fences := map[int64]string{} // every fence handed out, to whom
		var returned int64           // the highest fence of a Claim that has returned
		var ends sync.Mutex          // runs releases and deletions one at a time
		var ended []int64            // fences of successful releases and deletions, in order
		var stale []*idem.Lease      // abandoned leases
		var wg sync.WaitGroup
		for c := range claimers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range rounds {
					me := fmt.Sprintf("claimer %d round %d", c, r)
					mu.Lock()
					floor := returned
					mu.Unlock()
					l, _, err := idem.Claim(t.Context(), s, key, opts...)
					if err != nil || l == nil {
						continue // in progress, or gave up on lost answers
					}
					f := l.Fence()
					mu.Lock()
					if who, dup := fences[f]; dup {
						t.Errorf("%s got fence %d, already %s's", me, f, who)
					}
					fences[f] = me
					if f <= floor {
						t.Errorf("%s got fence %d, not above %d of a claim that returned before it started", me, f, floor)
					}
					returned = max(returned, f)
					mu.Unlock()
					switch {
					case chance(0.3): // abandon: the next claimer takes over
						mu.Lock()
						stale = append(stale, l)
						mu.Unlock()
						offset.Add(int64(3 * time.Second))
					case chance(0.3): // delete by hand: the next claimer starts afresh
						ends.Lock()
						if err := deleteByHand(f); err == nil {
							ended = append(ended, f)
						}
						ends.Unlock()
					default:
						ends.Lock()
						if err := l.Release(t.Context()); err == nil {
							ended = append(ended, f)
						}
						ends.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		for i := 1; i < len(ended); i++ {
			if ended[i] <= ended[i-1] {
				t.Errorf("releases and deletions succeeded with fences %v: not rising at %d", ended, i)
			}
		}
		s.On("PutIfAbsent", nil)
		s.On("CompareAndSwap", nil)
		s.On("Get", nil)
		offset.Add(int64(3 * time.Second))
		last, _, err := idem.Claim(t.Context(), s, key, opts...)
		if err != nil || last == nil {
			t.Fatalf("a last claim: %v, %v", last, err)
		}
		mu.Lock()
		for f, who := range fences {
			if last.Fence() <= f {
				t.Errorf("the last claim's fence %d is not above %s's %d", last.Fence(), who, f)
			}
		}
		t.Logf("%d leases, %d ended, %d abandoned", len(fences), len(ended), len(stale))
		mu.Unlock()
		for _, l := range stale {
			if err := l.Complete(t.Context(), []byte(`"stale"`)); !errors.Is(err, idem.ErrLeaseLost) {
				t.Errorf("an abandoned lease (fence %d) completed over the last claim (fence %d): %v", l.Fence(), last.Fence(), err)
			}
		}
	})
}

// TestAttackFenceTakeoverInLostClaimGap: A claims a released key; its swap
// applies and its answer is lost. In that gap B, its clock past A's lease,
// takes A's fresh claim over. A's read then finds B's record: A must get
// no lease (B's lease is live on A's clock too), and B's fence is above
// the one A's write made.
func TestAttackFenceTakeoverInLostClaimGap(t *testing.T) {
	storetest.Each(t, func(t *testing.T, inner idem.Store) {
		s := idemtest.NewFaulty(inner)
		var offset atomic.Int64
		opts := []idem.Option{
			idem.WithLease(time.Second),
			idem.WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }),
		}
		first, _, err := idem.Claim(t.Context(), s, "k", opts...)
		if err != nil || first == nil {
			t.Fatal(err)
		}
		if err := first.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		var b *idem.Lease
		var aWrote int64
		s.On("CompareAndSwap", idemtest.Times(1, func(ctx context.Context, c idemtest.Call, send func() error) error {
			return idemtest.Lose(ctx, c, func() error {
				if err := send(); err != nil {
					t.Errorf("A's claim over the tombstone: %v", err)
				}
				it, err := inner.Get(ctx, "k")
				if err != nil {
					t.Errorf("reading A's claim: %v", err)
				}
				aWrote = it.Version
				offset.Add(int64(3 * time.Second))
				b, _, err = idem.Claim(ctx, inner, "k", opts...)
				if err != nil || b == nil || b.Attempt() == 1 {
					t.Errorf("B's takeover in the gap: %v, %v", b, err)
				}
				return nil
			})
		}))
		a, _, err := idem.Claim(t.Context(), s, "k", opts...)
		if a != nil || !errors.Is(err, idem.ErrInProgress) {
			t.Errorf("A after its lost claim was taken over: lease %v (fence %d?), %v; want ErrInProgress", a, fenceOf(a), err)
		}
		if b == nil {
			t.FailNow()
		}
		if b.Fence() <= aWrote || aWrote <= first.Fence() {
			t.Errorf("fences: first %d, A's lost claim %d, B's takeover %d; want rising", first.Fence(), aWrote, b.Fence())
		}
	})
}

func fenceOf(l *idem.Lease) int64 {
	if l == nil {
		return 0
	}
	return l.Fence()
}
