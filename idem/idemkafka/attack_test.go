package idemkafka_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemkafka"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/internal/testenv"
)

// Attacks on Consume's promises: faults on the wire (a kgo.Dialer's
// connection), in the store (a wrapping idem.Store), and in the handler,
// with the interleavings forced by channels and Consume's own log lines.

// logTap is a slog.Handler that sends on c when a record with message msg
// is logged, and counts the records whose "err" matches idem.ErrInProgress
// (sending on busy for each).
type logTap struct {
	msg        string
	c          chan struct{}
	busy       chan struct{}
	inProgress atomic.Int32
}

func newLogTap(msg string) *logTap {
	return &logTap{msg: msg, c: make(chan struct{}, 1), busy: make(chan struct{}, 1)}
}

func (h *logTap) Enabled(context.Context, slog.Level) bool { return true }
func (h *logTap) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logTap) WithGroup(string) slog.Handler            { return h }
func (h *logTap) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.c <- struct{}{}:
		default:
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "err" && errors.Is(err, idem.ErrInProgress) {
			h.inProgress.Add(1)
			select {
			case h.busy <- struct{}{}:
			default:
			}
		}
		return true
	})
	return nil
}

// TestAttackRebalanceDuringBackoff: the first record of partition 0 fails
// (fn returns a plain error) on every attempt until the second consumer is
// assigned; a second consumer joins while the first is backing off before
// its next attempt (the fault: a rebalance mid-backoff). Partition 0 is
// rewound to the record and paused, and no batch holds the rebalance; the
// claim was released by the failure, so
// whoever owns partition 0 next runs it at once: no consumer ever meets it
// in progress (ErrInProgress), it is never skipped, and every event is
// applied once, the lag 0.
func TestAttackRebalanceDuringBackoff(t *testing.T) {
	eachStore(t, func(k *kafkaTest) {
		t := k.t
		first, second := events(6), events(12)[6:]
		k.produce(first...)
		var healed atomic.Bool
		var attempts atomic.Int32
		backingOff := make(chan struct{}, 1)
		fn := func(ctx context.Context, r *kgo.Record) error {
			if string(r.Value) == "e0" && !healed.Load() {
				if attempts.Add(1) == 2 {
					backingOff <- struct{}{}
				}
				return errors.New("e0: not yet")
			}
			k.apply(r)
			return nil
		}
		tap := newLogTap(idemkafka.RebalanceWaits)
		var replays atomic.Int32
		opts := []idemkafka.Option{idemkafka.WithLogger(slog.New(tap)), idemkafka.WithBackoff(50*time.Millisecond, 50*time.Millisecond),
			idemkafka.WithOnReplay(func(context.Context, *kgo.Record, string) { replays.Add(1) })}
		k.consume(k.consumer(kgo.HeartbeatInterval(100*time.Millisecond)), fn, opts...)
		await(t, backingOff, "e0 to fail twice, its partition paused between tries")
		assigned := k.join(fn, opts...)
		await(t, assigned, "the second consumer to be assigned a partition")
		healed.Store(true)
		k.produce(second...)
		k.drained(append(ids(first), ids(second)...)...)
		if n := tap.inProgress.Load(); n != 0 {
			t.Errorf("%d attempts found a record in progress, want 0: the failed claim was released", n)
		}
		if n := replays.Load(); n != 0 {
			t.Errorf("%d replays, want 0", n)
		}
		t.Logf("e0 failed %d times before the rebalance", attempts.Load())
	})
}

// lossyStore answers the CompareAndSwap of a key ending in suffix with
// idem.ErrUnknownOutcome after it is applied (the response lost), left
// times: idem's Lease sends a completion again four times after a lost
// response, so five losses make idem.Once fail with the completion stored.
// at is called on the last one.
type lossyStore struct {
	idem.Store
	suffix string
	left   atomic.Int32
	at     func()
}

func (s *lossyStore) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	it, err := s.Store.CompareAndSwap(ctx, key, version, value, ttl)
	if strings.HasSuffix(key, s.suffix) {
		if n := s.left.Add(-1); n >= 0 {
			if n == 0 {
				s.at()
			}
			return idem.Item{}, fmt.Errorf("lossy: the response was lost: %w", idem.ErrUnknownOutcome)
		}
	}
	return it, err
}

// TestAttackLostCompletion: the store applies e4's completion and loses
// the response, on the first write and every resend of it (the fault: a
// wrapping store returns idem.ErrUnknownOutcome after delegating), so
// idem.Once returns an unknown outcome. Consume must not commit e4 then
// (its partition's commit is at most e4's offset, 1, when the last
// response is lost), and its retry after the pause finds the completion stored:
// a replay, fn not run again. Every event is applied once, the lag 0.
func TestAttackLostCompletion(t *testing.T) {
	eachStore(t, func(k *kafkaTest) {
		t := k.t
		evs := events(9)
		k.produce(evs...)
		var committedAtLoss atomic.Int64
		s := &lossyStore{Store: k.store, suffix: "/e4", at: func() { committedAtLoss.Store(k.committed(1)) }}
		s.left.Store(5)
		k.store = s
		var replayed atomic.Pointer[string]
		k.consume(k.consumer(), func(ctx context.Context, r *kgo.Record) error {
			k.apply(r)
			return nil
		}, idemkafka.WithKey(idemkafka.Header("event-id")), idemkafka.WithOnReplay(func(_ context.Context, r *kgo.Record, _ string) {
			id := string(r.Value)
			replayed.Store(&id)
		}))
		k.drained(ids(evs)...)
		if left := s.left.Load(); left > 0 {
			t.Fatalf("%d lost responses left, want all five spent", left)
		}
		if c := committedAtLoss.Load(); c > 1 {
			t.Errorf("partition 1 committed to %d while e4 (offset 1) had an unknown outcome", c)
		}
		if id := replayed.Load(); id == nil || *id != "e4" {
			t.Errorf("replayed %v, want e4 (its completion was stored)", id)
		}
	})
}

// TestAttackCancelMidHandler: Consume's ctx ends while fn runs for e1, the
// first record of partition 1 (the fault: the test cancels it while fn
// waits on a channel, then lets fn return). If fn returns nil, e1 is
// stored and committed (partition 1 committed to 1), and a consumer
// started next in the group replays nothing; if fn returns ctx's error,
// e1 stays uncommitted and the next consumer applies it. Either way every
// event is applied once and the lag drains to 0.
func TestAttackCancelMidHandler(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	for _, tc := range []struct {
		name     string
		fails    bool
		wantNext int64 // partition 1's commit when the first consumer returns
	}{
		{"fn returns nil", false, 1},
		{"fn returns ctx's error", true, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKafkaTest(t, brokers, memstore.New())
			evs := events(6)
			k.produce(evs...)
			inside, proceed := make(chan struct{}), make(chan struct{})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			cl := k.consumer()
			errc := make(chan error, 1)
			go func() {
				errc <- idemkafka.Consume(ctx, cl, k.store, func(ctx context.Context, r *kgo.Record) error {
					if string(r.Value) == "e1" {
						close(inside)
						<-proceed
						if tc.fails {
							return ctx.Err()
						}
					}
					k.apply(r)
					return nil
				}, idemkafka.WithLogger(quiet))
			}()
			await(t, inside, "fn to run for e1")
			cancel()
			close(proceed)
			if err := <-errc; err != nil {
				t.Fatalf("Consume: %v", err)
			}
			cl.Close()
			if got := k.committed(1); got != tc.wantNext {
				t.Errorf("partition 1 committed to %d, want %d", got, tc.wantNext)
			}
			var replays atomic.Int32
			k.consume(k.consumer(), func(ctx context.Context, r *kgo.Record) error {
				k.apply(r)
				return nil
			}, idemkafka.WithOnReplay(func(context.Context, *kgo.Record, string) { replays.Add(1) }))
			k.drained(ids(evs)...)
			if n := replays.Load(); n != 0 {
				t.Errorf("%d replays, want 0: what was done was committed", n)
			}
		})
	}
}

// commitFault is a broker connection that either refuses to send every
// OffsetCommit request (API key 8, after the 4-byte length) of its client
// (refuse: kgo sends a request that never left again, so refusing only the
// first would not fail the commit), or sends the first and then closes the
// connection, so the broker applies it and its response is lost.
type commitFault struct {
	net.Conn
	refuse bool
	hit    *atomic.Int32
}

func (c commitFault) Write(b []byte) (int, error) {
	if len(b) >= 6 && binary.BigEndian.Uint16(b[4:6]) == 8 && (c.hit.Add(1) == 1 || c.refuse) {
		if c.refuse {
			return 0, errors.New("the OffsetCommit was not sent")
		}
		n, err := c.Conn.Write(b)
		_ = c.Conn.Close()
		return n, err
	}
	return c.Conn.Write(b)
}

// TestAttackCommitFails: the first consumer's offset commit fails on the
// wire (every one refused before a byte of it is sent, or the first
// applied by the broker with its response lost). Consume logs it; the consumer is stopped right
// after, before another commit could cover it, and a second consumer of
// the group handles what follows. Nothing is skipped nor applied twice:
// a record whose commit was lost is replayed (the outcome was stored
// first), every event is applied once, the lag 0.
func TestAttackCommitFails(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	for _, refuse := range []bool{true, false} {
		t.Run(fmt.Sprintf("refused=%v", refuse), func(t *testing.T) {
			k := newKafkaTest(t, brokers, memstore.New())
			first, second := events(6), events(12)[6:]
			k.produce(first...)
			var hit atomic.Int32
			dial := func(ctx context.Context, network, host string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, host)
				if err != nil {
					return nil, err
				}
				return commitFault{Conn: c, refuse: refuse, hit: &hit}, nil
			}
			tap := newLogTap("idemkafka: committing handled records failed; their redelivery will be replayed")
			fn := func(ctx context.Context, r *kgo.Record) error {
				k.apply(r)
				return nil
			}
			stop := k.consume(k.consumer(kgo.Dialer(dial), kgo.RequestRetries(0)), fn, idemkafka.WithLogger(slog.New(tap)))
			await(t, tap.c, "the first commit to fail")
			stop()
			byFirst := k.total()
			var replays atomic.Int32
			k.consume(k.consumer(), fn, idemkafka.WithOnReplay(func(context.Context, *kgo.Record, string) { replays.Add(1) }))
			k.produce(second...)
			k.drained(append(ids(first), ids(second)...)...)
			if got := int(replays.Load()); refuse && got != byFirst {
				t.Errorf("%d replays after every commit was refused, want %d (each record the first consumer did)", got, byFirst)
			}
			t.Logf("the first consumer applied %d; the second replayed %d", byFirst, replays.Load())
		})
	}
}

// TestAttackKeyError: the key function fails for e2 (the fault: a
// poison record with no usable key). e2 is logged and committed without
// running fn, never tried again, and holds nothing back: every other
// event is applied once and the lag drains to 0.
func TestAttackKeyError(t *testing.T) {
	k := newKafkaTest(t, testenv.KafkaBrokers(t), memstore.New())
	evs := events(9)
	k.produce(evs...)
	var keyCalls atomic.Int32
	key := func(r *kgo.Record) (string, error) {
		if string(r.Value) == "e2" {
			keyCalls.Add(1)
			return "", errors.New("poison: no order ID in the value")
		}
		return idemkafka.Header("event-id")(r)
	}
	k.consume(k.consumer(), func(ctx context.Context, r *kgo.Record) error {
		k.apply(r)
		return nil
	}, idemkafka.WithKey(key))
	var others []string
	for _, e := range evs {
		if e.id != "e2" {
			others = append(others, e.id)
		}
	}
	k.drained(others...)
	if n := keyCalls.Load(); n != 1 {
		t.Errorf("e2's key asked %d times, want 1", n)
	}
}

// TestAttackSameClientTwice: a second Consume on a client that a first
// Consume polls (the fault: one client given to two poll loops) is refused
// with idem.ErrInvalid before it polls, and the first goes on: every event
// applied once, the lag 0.
func TestAttackSameClientTwice(t *testing.T) {
	k := newKafkaTest(t, testenv.KafkaBrokers(t), memstore.New())
	first, second := events(3), events(9)[3:]
	k.produce(first...)
	cl := k.consumer()
	k.consume(cl, func(ctx context.Context, r *kgo.Record) error {
		k.apply(r)
		return nil
	})
	waitFor(t, 30*time.Second, "the first Consume to apply an event", func() bool { return k.total() > 0 })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err := idemkafka.Consume(ctx, cl, k.store, func(context.Context, *kgo.Record) error {
		t.Error("the second Consume ran fn")
		return nil
	}, idemkafka.WithLogger(quiet))
	if !errors.Is(err, idem.ErrInvalid) {
		t.Errorf("the second Consume on a polled client: %v, want idem.ErrInvalid", err)
	}
	k.produce(second...)
	k.drained(append(ids(first), ids(second)...)...)
}

// TestAttackSimultaneousStart: two consumers of the group start at the
// same moment with records already waiting on every partition (the fault:
// both race to join, the first may get every partition and start before
// the second's join revokes some). No record is run twice nor delivered
// again after it was done (no replay), every event is applied once, the
// lag 0.
func TestAttackSimultaneousStart(t *testing.T) {
	eachStore(t, func(k *kafkaTest) {
		t := k.t
		evs := events(30)
		k.produce(evs...)
		var replays atomic.Int32
		opts := []idemkafka.Option{idemkafka.WithOnReplay(func(context.Context, *kgo.Record, string) { replays.Add(1) }), idemkafka.WithConcurrency(1)}
		fn := func(ctx context.Context, r *kgo.Record) error {
			k.apply(r)
			return nil
		}
		a, b := k.consumer(kgo.HeartbeatInterval(100*time.Millisecond)), k.consumer(kgo.HeartbeatInterval(100*time.Millisecond))
		var start sync.WaitGroup
		start.Go(func() { k.consume(a, fn, opts...) })
		start.Go(func() { k.consume(b, fn, opts...) })
		start.Wait()
		k.drained(ids(evs)...)
		if n := replays.Load(); n != 0 {
			t.Errorf("%d replays, want 0", n)
		}
	})
}

// TestAttackHandlerOutlivesRebalanceTimeout: the first consumer's fn holds
// e0 (on a channel) past the group's rebalance timeout of 1 s (the fault:
// a second consumer joins while fn is held, and the first cannot rejoin
// in time, so the broker throws it out and hands every partition to the
// second mid-work). The second finds e0 in progress (the first's lease,
// extended while fn runs; its Consume logs idem.ErrInProgress), pauses the
// partition and tries again; fn is released only then. e0 is applied once,
// by the first; every event is applied once, the lag 0.
func TestAttackHandlerOutlivesRebalanceTimeout(t *testing.T) {
	k := newKafkaTest(t, testenv.KafkaBrokers(t), memstore.New())
	first, second := events(6), events(12)[6:]
	k.produce(first...)
	g := newGate(t)
	var byFirst atomic.Int32
	short := []kgo.Opt{kgo.RebalanceTimeout(time.Second), kgo.HeartbeatInterval(100 * time.Millisecond)}
	k.consume(k.consumer(short...), func(ctx context.Context, r *kgo.Record) error {
		if string(r.Value) == "e0" {
			g.hold()
		}
		k.apply(r)
		byFirst.Add(1)
		return nil
	})
	await(t, g.held, "the first consumer to hold e0")
	tap := newLogTap("")
	var replayed sync.Map
	cl := k.consumer(short...)
	k.consume(cl, func(ctx context.Context, r *kgo.Record) error {
		k.apply(r)
		return nil
	}, idemkafka.WithLogger(slog.New(tap)), idemkafka.WithOnReplay(func(_ context.Context, r *kgo.Record, _ string) {
		replayed.Store(string(r.Value), true)
	}))
	await(t, tap.busy, "the second consumer to find e0 in progress")
	g.open()
	k.produce(second...)
	k.drained(append(ids(first), ids(second)...)...)
	// e0 is replayed by whichever consumer owns partition 0 once the first
	// has stored it: the second, or the first again after a rebalance (the
	// second gives the partition up while it pauses it).
	t.Logf("the first consumer applied %d; the second met e0 in progress %d times", byFirst.Load(), tap.inProgress.Load())
}

// TestAttackRebalanceWaitsForSemaphore: with WithConcurrency(1), one
// partition's first record is held in fn while the fetch's other
// partitions wait for the semaphore, and a second consumer joins (the
// fault: a rebalance while partitions are queued, not started). Once
// Consume logs RebalanceWaits and fn is released, the queued partitions
// start no record: nothing is run twice or delivered again after it was
// done (no replay), every event is applied once, the lag 0.
func TestAttackRebalanceWaitsForSemaphore(t *testing.T) {
	k := newKafkaTest(t, testenv.KafkaBrokers(t), memstore.New())
	first, second := events(9), events(18)[9:]
	k.produce(first...)
	g := newGate(t)
	var byFirst, replays atomic.Int32
	onReplay := idemkafka.WithOnReplay(func(context.Context, *kgo.Record, string) { replays.Add(1) })
	tap := newLogTap(idemkafka.RebalanceWaits)
	k.consume(k.consumer(kgo.HeartbeatInterval(100*time.Millisecond)), func(ctx context.Context, r *kgo.Record) error {
		g.hold()
		k.apply(r)
		byFirst.Add(1)
		return nil
	}, onReplay, idemkafka.WithConcurrency(1), idemkafka.WithLogger(slog.New(tap)))
	await(t, g.held, "the first consumer to hold its first record")
	assigned := k.join(func(ctx context.Context, r *kgo.Record) error {
		k.apply(r)
		return nil
	}, onReplay)
	await(t, tap.c, "the first consumer to hear of the rebalance")
	g.open()
	await(t, assigned, "the second consumer to be assigned a partition")
	k.produce(second...)
	k.drained(append(ids(first), ids(second)...)...)
	if n := replays.Load(); n != 0 {
		t.Errorf("%d replays, want 0", n)
	}
	t.Logf("the first consumer applied %d of %d", byFirst.Load(), len(first)+len(second))
}

// TestAttackRevokedThenReassigned: the first consumer holds a record of
// its first fetch while a second joins; once the rebalance waits and fn is
// released, the second is stopped (it leaves the group) as soon as it is
// assigned, so the partitions it took come straight back to the first
// (the fault: a partition revoked and at once re-assigned to the consumer
// that gave it up). The first starts each of them at its commit: no record
// done is delivered again (no replay), none is skipped, every event is
// applied once, the lag 0.
func TestAttackRevokedThenReassigned(t *testing.T) {
	k := newKafkaTest(t, testenv.KafkaBrokers(t), memstore.New())
	first, second := events(9), events(18)[9:]
	k.produce(first...)
	g := newGate(t)
	var replays, bySecond atomic.Int32
	onReplay := idemkafka.WithOnReplay(func(context.Context, *kgo.Record, string) { replays.Add(1) })
	tap := newLogTap(idemkafka.RebalanceWaits)
	k.consume(k.consumer(kgo.HeartbeatInterval(100*time.Millisecond)), func(ctx context.Context, r *kgo.Record) error {
		g.hold()
		k.apply(r)
		return nil
	}, onReplay, idemkafka.WithLogger(slog.New(tap)))
	await(t, g.held, "the first consumer to hold a record")
	assigned := make(chan struct{})
	var assignedOnce sync.Once
	cl := k.consumer(kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
		if len(a[k.topic]) > 0 {
			assignedOnce.Do(func() { close(assigned) })
		}
	}))
	stopSecond := k.consume(cl, func(ctx context.Context, r *kgo.Record) error {
		k.apply(r)
		bySecond.Add(1)
		return nil
	}, onReplay)
	await(t, tap.c, "the first consumer to hear of the rebalance")
	g.open()
	await(t, assigned, "the second consumer to be assigned a partition")
	stopSecond()
	k.produce(second...)
	k.drained(append(ids(first), ids(second)...)...)
	if n := replays.Load(); n != 0 {
		t.Errorf("%d replays, want 0", n)
	}
	t.Logf("the second consumer applied %d before it left", bySecond.Load())
}

// TestAttackHandlerWithoutConsume: a Handler in a poll loop of one's own,
// given one record twice at once (the fault: two pollers handed the same
// record, as a partition moved mid-work). While the first runs fn (held on
// a channel), the second is refused for now (commit false,
// idem.ErrInProgress), fn not run; after it, a third delivery is a replay
// (commit true, WithOnReplay called with the full key), fn run once in all.
func TestAttackHandlerWithoutConsume(t *testing.T) {
	inside, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	var replayedKey atomic.Pointer[string]
	h, err := idemkafka.NewHandler(memstore.New(), func(ctx context.Context, r *kgo.Record) error {
		runs.Add(1)
		close(inside)
		<-release
		return nil
	}, idemkafka.WithKeyPrefix("own-loop/"), idemkafka.WithOnReplay(func(_ context.Context, _ *kgo.Record, key string) {
		replayedKey.Store(&key)
	}))
	if err != nil {
		t.Fatal(err)
	}
	r := &kgo.Record{Topic: "orders", Partition: 2, Offset: 41, Value: []byte("e41")}
	type result struct {
		commit bool
		err    error
	}
	first := make(chan result, 1)
	go func() {
		commit, err := h.Handle(t.Context(), r)
		first <- result{commit, err}
	}()
	await(t, inside, "fn to run for the first delivery")
	if commit, err := h.Handle(t.Context(), r); commit || !errors.Is(err, idem.ErrInProgress) {
		t.Errorf("a second delivery while fn runs: commit %v, err %v; want false, idem.ErrInProgress", commit, err)
	}
	close(release)
	if got := <-first; !got.commit || got.err != nil {
		t.Errorf("the first delivery: commit %v, err %v; want true, nil", got.commit, got.err)
	}
	if commit, err := h.Handle(t.Context(), r); !commit || err != nil {
		t.Errorf("a third delivery: commit %v, err %v; want a replay, true, nil", commit, err)
	}
	if key, want := replayedKey.Load(), "own-loop/"+idem.JoinKey("orders", "2", "41"); key == nil || *key != want {
		t.Errorf("replay reported key %v, want %q", key, want)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1", n)
	}
}
