package idemkafka_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemkafka"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestProducerDuplicates: five events, each produced three times at three
// offsets (a producer's retries: the fault is the producer sending every
// event again, twice, after the first sends were acked). Keyed by the
// event-id header, each is applied once; keyed by offset (the default),
// the checker sees all fifteen.
func TestProducerDuplicates(t *testing.T) {
	evs := events(5)
	var sent []event
	for range 3 {
		sent = append(sent, evs...)
	}
	for _, tc := range []struct {
		name string
		opts []idemkafka.Option
		want int // side effects in all
	}{
		{"event-id", []idemkafka.Option{idemkafka.WithKey(idemkafka.Header("event-id"))}, len(evs)},
		{"offset", nil, len(sent)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachStore(t, func(k *kafkaTest) {
				t := k.t
				k.produce(sent...)
				var replays atomic.Int32
				opts := append(tc.opts, idemkafka.WithOnReplay(func(context.Context, *kgo.Record, string) { replays.Add(1) }))
				k.consume(k.consumer(), func(ctx context.Context, r *kgo.Record) error {
					k.apply(r)
					return nil
				}, opts...)
				waitFor(t, 40*time.Second, "the lag to drain", func() bool { return k.lag() == 0 })
				if got := k.total(); got != tc.want {
					t.Fatalf("%d side effects for %d records of %d events, want %d", got, len(sent), len(evs), tc.want)
				}
				if tc.want == len(evs) {
					k.checkOnce(ids(evs)...)
				}
				if got, want := int(replays.Load()), len(sent)-tc.want; got != want {
					t.Errorf("%d replays, want %d", got, want)
				}
			})
		})
	}
}

// TestTransientThenSuccess: one event's handler fails its first attempt
// with a plain error (the fault: fn returns an error once). Consume rewinds
// and pauses its partition and tries it again; it is applied once, the events after it on its
// partition only after it, and its offset is not committed before it is
// done.
func TestTransientThenSuccess(t *testing.T) {
	eachStore(t, func(k *kafkaTest) {
		t := k.t
		evs := events(9)
		k.produce(evs...)
		flaky := evs[4] // the second event of partition 1
		var attempts atomic.Int32
		var committedAtRetry int64 = -2
		var order []string // partition 1's events, in the order applied
		k.consume(k.consumer(), func(ctx context.Context, r *kgo.Record) error {
			id := string(r.Value)
			if id == flaky.id {
				switch attempts.Add(1) {
				case 1:
					return errors.New("flaky: try again")
				case 2:
					committedAtRetry = k.committed(r.Partition)
				}
			}
			k.apply(r)
			if r.Partition == flaky.partition {
				k.mu.Lock()
				order = append(order, id)
				k.mu.Unlock()
			}
			return nil
		})
		k.drained(ids(evs)...)
		if n := attempts.Load(); n != 2 {
			t.Errorf("%s attempted %d times, want 2", flaky.id, n)
		}
		// Committed offsets name the next record to read: the flaky
		// record's offset is 1, so a commit at or past 2 covers it.
		if committedAtRetry > 1 {
			t.Errorf("partition %d was committed to %d before its record at offset 1 was done", flaky.partition, committedAtRetry)
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		if want := []string{"e1", "e4", "e7"}; !equal(order, want) {
			t.Errorf("partition 1 applied in the order %v, want %v", order, want)
		}
	})
}

// TestPermanentError: one event's handler fails with idem.Permanent (the
// fault: fn returns a permanent error). It is tried once, stored, and
// committed: the lag drains to 0 and a later delivery of the record gets
// the stored error without running fn.
func TestPermanentError(t *testing.T) {
	eachStore(t, func(k *kafkaTest) {
		t := k.t
		evs := events(6)
		k.produce(evs...)
		poison := evs[2]
		var attempts atomic.Int32
		var poisonRec atomic.Pointer[kgo.Record]
		k.consume(k.consumer(), func(ctx context.Context, r *kgo.Record) error {
			if string(r.Value) == poison.id {
				attempts.Add(1)
				poisonRec.Store(r)
				return idem.Permanent(errors.New("poison: not an order event"))
			}
			k.apply(r)
			return nil
		}, idemkafka.WithKeyPrefix(k.group+"/"))
		var others []string
		for _, e := range evs {
			if e != poison {
				others = append(others, e.id)
			}
		}
		k.drained(others...)
		if n := attempts.Load(); n != 1 {
			t.Errorf("%s attempted %d times, want 1", poison.id, n)
		}
		ran := false
		h, err := idemkafka.NewHandler(k.store, func(context.Context, *kgo.Record) error { ran = true; return nil }, idemkafka.WithKeyPrefix(k.group+"/"))
		if err != nil {
			t.Fatal(err)
		}
		commit, err := h.Handle(t.Context(), poisonRec.Load())
		perm, ok := errors.AsType[*idem.PermanentError](err)
		if !commit || !ok || !perm.Replayed || ran {
			t.Errorf("a redelivery of %s: commit %v, err %v, fn ran %v; want the stored permanent error, committable, fn not run", poison.id, commit, err, ran)
		}
	})
}

// TestRebalanceMidBatch: a consumer holds the first record of each
// partition in its handler (on a channel) while a second consumer joins the
// group (the fault: a rebalance while a batch is in flight). The handlers
// are released once the first consumer's Consume knows the rebalance waits
// (it logs RebalanceWaits); it finishes the records in flight, commits
// them, starts no other record of its fetch, rewinds, and lets the
// rebalance go on. A second wave of events is produced once the second
// consumer has a partition. Every event is applied once, the second
// consumer applies some, no consumer meets a record already done (no
// replay: the first committed before it let a partition go), and the lag
// drains to 0.
func TestRebalanceMidBatch(t *testing.T) {
	eachStore(t, func(k *kafkaTest) {
		t := k.t
		first, second := events(12), events(24)[12:]
		k.produce(first...)
		release := make(chan struct{})
		var releaseOnce sync.Once
		releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
		defer releaseAll() // before the consumers stop (in cleanups) on a failure
		held := make(chan struct{}, partitions)
		heldOnce := make([]sync.Once, partitions)
		var byFirst, bySecond, replays atomic.Int32
		onReplay := idemkafka.WithOnReplay(func(context.Context, *kgo.Record, string) { replays.Add(1) })
		waits := make(chan struct{}, 1)
		logger := slog.New(&signalHandler{msg: idemkafka.RebalanceWaits, c: waits})
		// A heartbeat every 100ms: the first consumer hears of the
		// rebalance soon after the second joins.
		k.consume(k.consumer(kgo.HeartbeatInterval(100*time.Millisecond)), func(ctx context.Context, r *kgo.Record) error {
			heldOnce[r.Partition].Do(func() {
				held <- struct{}{}
				<-release
			})
			k.apply(r)
			byFirst.Add(1)
			return nil
		}, onReplay, idemkafka.WithLogger(logger))
		await(t, held, "the first consumer to hold a record") // inside a handler, its fetch not done

		assigned := k.join(func(ctx context.Context, r *kgo.Record) error {
			k.apply(r)
			bySecond.Add(1)
			return nil
		}, onReplay)
		await(t, waits, "the first consumer to hear of the rebalance") // its Consume knows
		releaseAll()
		await(t, assigned, "the second consumer to be assigned a partition")
		k.produce(second...)
		k.drained(append(ids(first), ids(second)...)...)
		if bySecond.Load() == 0 {
			t.Error("the second consumer applied no event, want some")
		}
		if n := replays.Load(); n != 0 {
			t.Errorf("%d records delivered again after they were done, want 0", n)
		}
		t.Logf("first consumer applied %d, second %d", byFirst.Load(), bySecond.Load())
	})
}

// join starts a consumer that joins the group, and returns a channel that
// receives when it is assigned a partition.
func (k *kafkaTest) join(fn idemkafka.Func, opts ...idemkafka.Option) <-chan struct{} {
	assigned := make(chan struct{}, 1)
	cl := k.consumer(kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
		if len(a[k.topic]) > 0 {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}
	}))
	k.consume(cl, fn, opts...)
	return assigned
}

// await waits up to 30 s for c, failing the test if it never comes.
func await(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("after 30s: still waiting for %s", what)
	}
}

// TestConsumeRefuses: bad input and clients Consume cannot commit for
// safely are refused before anything is polled.
func TestConsumeRefuses(t *testing.T) {
	fn := func(context.Context, *kgo.Record) error { return nil }
	client := func(opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	group := kgo.ConsumerGroup("g")
	good := client(append([]kgo.Opt{group, kgo.ConsumeTopics("t")}, idemkafka.ClientOpts()...)...)
	for _, tc := range []struct {
		name string
		cl   *kgo.Client
		s    idem.Store
		fn   idemkafka.Func
		opts []idemkafka.Option
	}{
		{"nil client", nil, memstore.New(), fn, nil},
		{"nil store", good, nil, fn, nil},
		{"nil handler", good, memstore.New(), nil, nil},
		{"no group", client(), memstore.New(), fn, nil},
		{"autocommit", client(group, kgo.BlockRebalanceOnPoll()), memstore.New(), fn, nil},
		{"rebalances mid-batch", client(group, kgo.DisableAutoCommit()), memstore.New(), fn, nil},
		{"hook replaced", client(append(append([]kgo.Opt{group}, idemkafka.ClientOpts()...), kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) {}))...), memstore.New(), fn, nil},
		{"bad lease", good, memstore.New(), fn, []idemkafka.Option{idemkafka.WithLease(time.Millisecond)}},
		{"nil key", good, memstore.New(), fn, []idemkafka.Option{idemkafka.WithKey(nil)}},
		{"no concurrency", good, memstore.New(), fn, []idemkafka.Option{idemkafka.WithConcurrency(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := idemkafka.Consume(ctx, tc.cl, tc.s, tc.fn, tc.opts...); !errors.Is(err, idem.ErrInvalid) {
				t.Errorf("Consume: %v, want idem.ErrInvalid", err)
			}
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// signalHandler is a slog.Handler that sends on c when a record with the
// message msg is logged.
type signalHandler struct {
	msg string
	c   chan struct{}
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *signalHandler) WithGroup(string) slog.Handler            { return h }
func (h *signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.c <- struct{}{}:
		default:
		}
	}
	return nil
}
