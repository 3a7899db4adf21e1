package idemkafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemkafka"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/internal/testenv"
)

// Attacks that each broke a promise of doc.go, the README or a doc comment
// before its fix: a stalled partition held the others back, a poll cut by
// ctx lost its records to a client used again, fn's own ErrInvalid was
// committed, and the docs promised a free key after a failed completion.

// TestAttackSlowPartitionStallsOthers: the record of partition 0 fails
// transiently (fn returns a plain error) until the test lets it succeed.
// Once Consume is retrying it in place, an event is produced on partition
// 1. The docs say a failing record "holds the rest of its partition back"
// and that "partitions run concurrently"; but batch waits for every
// partition of the fetch before it polls again, so partition 1's new event
// is not even fetched while partition 0 retries: one stuck key (or a
// previous owner's lease, ErrInProgress for up to 30 s) stalls every
// partition of the consumer, and holds back their commits too.
func TestAttackSlowPartitionStallsOthers(t *testing.T) {
	k := newKafkaTest(t, testenv.KafkaBrokers(t), memstore.New())
	k.produce(event{"slow", 0})
	var healed atomic.Bool
	retrying := make(chan struct{}, 1)
	var attempts atomic.Int32
	k.consume(k.consumer(), func(ctx context.Context, r *kgo.Record) error {
		if string(r.Value) == "slow" && !healed.Load() {
			if attempts.Add(1) == 2 {
				retrying <- struct{}{}
			}
			return errors.New("the downstream service for this key is down")
		}
		k.apply(r)
		return nil
	})
	await(t, retrying, "partition 0's record to be retried in place")
	k.produce(event{"fast", 1})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && k.total() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	got := k.total()
	healed.Store(true)
	if got == 0 {
		t.Errorf("partition 1's event not applied in 5 s while partition 0's record was retried (%d attempts): every partition waits for the slowest", attempts.Load())
	}
	k.drained("slow", "fast")
}

// cancelOnPoll is a kgo hook that calls the cancel function stored in it
// (once) when a record is returned by a poll: on the polling goroutine,
// before PollFetches returns.
type cancelOnPoll struct {
	cancel atomic.Pointer[context.CancelFunc]
}

func (h *cancelOnPoll) OnFetchRecordUnbuffered(_ *kgo.Record, polled bool) {
	if !polled {
		return
	}
	if c := h.cancel.Swap(nil); c != nil {
		(*c)()
	}
}

// TestAttackReusedClientLosesPolled: Consume's ctx ends just as a poll
// returns records (the fault: a kgo hook cancels it when the poll hands
// out its first record, before PollFetches returns; in production, the
// cancel racing a fetch that arrives). Consume sees ctx.Err and returns nil
// without handling or rewinding the records it polled. The same client is
// then given to a second Consume (the docs forbid only two at once): it
// never sees those records, and commits past them when it handles the
// next wave. Want every event applied once; got the first wave lost, its
// offsets committed (lag 0).
func TestAttackReusedClientLosesPolled(t *testing.T) {
	k := newKafkaTest(t, testenv.KafkaBrokers(t), memstore.New())
	hook := &cancelOnPoll{}
	cl := k.consumer(kgo.WithHooks(hook))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	hook.cancel.Store(&cancel)
	fn := func(ctx context.Context, r *kgo.Record) error { k.apply(r); return nil }
	first := events(3) // one per partition
	errc := make(chan error, 1)
	go func() { errc <- idemkafka.Consume(ctx, cl, k.store, fn, idemkafka.WithLogger(quiet)) }()
	k.produce(first...)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("first Consume: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first Consume did not return")
	}
	k.consume(cl, fn)
	second := events(6)[3:]
	k.produce(second...)
	waitFor(t, 30*time.Second, "the lag to drain", func() bool { return k.total() >= len(second) && k.lag() == 0 })
	k.checkOnce(append(ids(first), ids(second)...)...)
}

// TestAttackFnErrInvalidCommitted: fn fails with an error of its own
// that wraps idem.ErrInvalid (a nested idem.Do given a bad key, a
// validation error that reuses the sentinel). Handle's doc says any error
// of fn other than a permanent one leaves the record uncommitted, and that
// commit with ErrInvalid means a key idem refused and that "fn did not
// run". Handle classifies by errors.Is on the whole error, so fn's own
// error is taken for the key's: commit true, nothing stored; Consume skips
// the record for good, and a redelivery runs fn again.
func TestAttackFnErrInvalidCommitted(t *testing.T) {
	var runs atomic.Int32
	h, err := idemkafka.NewHandler(memstore.New(), func(ctx context.Context, r *kgo.Record) error {
		if runs.Add(1) == 1 {
			return fmt.Errorf("applying the order: the ledger refused a transient request: %w", idem.ErrInvalid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &kgo.Record{Topic: "orders", Partition: 0, Offset: 7, Value: []byte("e7")}
	commit, err := h.Handle(t.Context(), r)
	if commit {
		t.Errorf("Handle after fn failed (not permanently): commit true, err %v; want false: the record was not handled", err)
	}
	commit, err = h.Handle(t.Context(), r)
	if !commit || err != nil || runs.Load() != 2 {
		t.Errorf("the redelivery: commit %v, err %v, fn run %d times in all", commit, err, runs.Load())
	}
}

// failCompletion is a store whose CompareAndSwap of any key fails (nothing
// written) with a plain, definite error while fail is set: a throttled
// or unavailable store when the completion is written.
type failCompletion struct {
	idem.Store
	fail atomic.Bool
	hits atomic.Int32
}

func (s *failCompletion) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	if s.fail.Load() {
		s.hits.Add(1)
		return idem.Item{}, errors.New("store throttled: nothing written")
	}
	return s.Store.CompareAndSwap(ctx, key, version, value, ttl)
}

// TestAttackFailedCompletionRunsTwice: fn succeeds and the store then
// refuses to write the completion (a definite, transient
// error: nothing written, no crash). The outcome was never stored, so the
// record is not committable, and, as the docs say, the claim holds until
// its lease passes (the retry at once gets idem.ErrInProgress) and the
// delivery after it runs fn again, as after a crash: 2 runs.
func TestAttackFailedCompletionRunsTwice(t *testing.T) {
	s := &failCompletion{Store: memstore.New()}
	var runs atomic.Int32
	h, err := idemkafka.NewHandler(s, func(ctx context.Context, r *kgo.Record) error {
		runs.Add(1)
		return nil
	}, idemkafka.WithLease(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	r := &kgo.Record{Topic: "orders", Partition: 0, Offset: 7, Value: []byte("e7")}
	s.fail.Store(true)
	commit, err := h.Handle(t.Context(), r)
	s.fail.Store(false)
	if commit || err == nil {
		t.Fatalf("Handle with the completion refused: commit %v, err %v; want false and an error", commit, err)
	}
	commit, err = h.Handle(t.Context(), r)
	if commit || !errors.Is(err, idem.ErrInProgress) {
		t.Errorf("the retry at once: commit %v, err %v; want false and ErrInProgress (the claim holds)", commit, err)
	}
	time.Sleep(300 * time.Millisecond) // the abandoned lease passes
	commit, err = h.Handle(t.Context(), r)
	if !commit || err != nil {
		t.Fatalf("the retry after the lease: commit %v, err %v", commit, err)
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("fn ran %d times, want 2: once before the failed completion, once after the lease", n)
	}
}
