package idemkafka_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemkafka"
	"github.com/idemkit/idemkit/internal/storetest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The tests run real consumers against the testenv broker (one KRaft node,
// group.initial.rebalance.delay.ms=0, so a group's first member is
// assigned at once), on a fresh topic and group each, with each idem.Store,
// and count side effects per logical event: exactly one each, none lost,
// and the group's lag 0 at the end (every record committed).

const partitions = 3

// kafkaTest is one test's topic, group, store and the side effects counted.
type kafkaTest struct {
	t       *testing.T
	brokers []string
	adm     *kadm.Client
	topic   string
	group   string
	store   idem.Store

	mu      sync.Mutex
	applied map[string]int // event ID → times its side effect happened
}

// eachStore runs fn on a fresh topic and group, with each store.
func eachStore(t *testing.T, fn func(k *kafkaTest)) {
	brokers := testenv.KafkaBrokers(t)
	storetest.Each(t, func(t *testing.T, s idem.Store) {
		fn(newKafkaTest(t, brokers, s))
	})
}

// newKafkaTest creates a topic of its own (deleted with its group when t
// ends) with the given partitions.
func newKafkaTest(t *testing.T, brokers []string, s idem.Store) *kafkaTest {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close) // after the deletions below: cleanups run last-in, first-out
	k := &kafkaTest{t: t, brokers: brokers, adm: kadm.NewClient(cl), store: s, applied: map[string]int{}}
	k.topic = testenv.UniqueName(t, "idemkafka")
	k.group = k.topic + "_g"
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := k.adm.CreateTopic(ctx, partitions, 1, nil, k.topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", k.topic, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = k.adm.DeleteGroups(ctx, k.group) // refused while a dead member's session lasts
		if _, err := k.adm.DeleteTopics(ctx, k.topic); err != nil {
			t.Logf("deleting topic %s: %v", k.topic, err)
		}
	})
	return k
}

// event is one record to produce: an event ID (the "event-id" header and
// the value) on a partition.
type event struct {
	id        string
	partition int32
}

// events is n events spread over the partitions: e0 on 0, e1 on 1, ...
func events(n int) []event {
	evs := make([]event, n)
	for i := range evs {
		evs[i] = event{fmt.Sprintf("e%d", i), int32(i % partitions)}
	}
	return evs
}

func ids(evs []event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.id
	}
	return out
}

// produce produces the events, in order, and waits for their acks.
func (k *kafkaTest) produce(evs ...event) {
	k.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.brokers...), kgo.DefaultProduceTopic(k.topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		k.t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		recs[i] = &kgo.Record{Partition: e.partition, Value: []byte(e.id), Headers: []kgo.RecordHeader{{Key: "event-id", Value: []byte(e.id)}}}
	}
	if err := cl.ProduceSync(k.t.Context(), recs...).FirstErr(); err != nil {
		k.t.Fatalf("producing %d records: %v", len(recs), err)
	}
}

// apply is the side effect: it counts the record's event.
func (k *kafkaTest) apply(r *kgo.Record) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.applied[string(r.Value)]++
}

func (k *kafkaTest) total() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.applied {
		n += c
	}
	return n
}

// checkOnce requires every event of want applied exactly once, and
// nothing else.
func (k *kafkaTest) checkOnce(want ...string) {
	k.t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	checkOnce(k.t, k.applied, want)
}

func checkOnce(t *testing.T, applied map[string]int, want []string) {
	t.Helper()
	wanted := map[string]bool{}
	for _, id := range want {
		wanted[id] = true
		if got := applied[id]; got != 1 {
			t.Errorf("event %s applied %d times, want 1", id, got)
		}
	}
	for id, n := range applied {
		if !wanted[id] {
			t.Errorf("event %s applied %d times, want none", id, n)
		}
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lag is the group's lag: the records of the topic after its committed
// offsets (kadm: end offsets and the group's commits).
func (k *kafkaTest) lag() int64 {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(k.t.Context(), 10*time.Second)
	defer cancel()
	ends, err := k.adm.ListEndOffsets(ctx, k.topic)
	if err != nil {
		k.t.Fatalf("end offsets: %v", err)
	}
	commits, err := k.adm.FetchOffsets(ctx, k.group)
	if err != nil {
		k.t.Fatalf("group offsets: %v", err)
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		done := int64(0)
		if c, ok := commits.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			done = c.At
		}
		lag += o.Offset - done
	})
	return lag
}

// drained waits until every event of want was applied and the group's lag
// is 0, then requires each applied exactly once.
func (k *kafkaTest) drained(want ...string) {
	k.t.Helper()
	waitFor(k.t, 40*time.Second, "every event applied and the lag 0", func() bool {
		return k.total() >= len(want) && k.lag() == 0
	})
	k.checkOnce(want...)
}

// consumer returns a group consumer of the topic from its start, with
// Consume's options, closed when the test ends.
func (k *kafkaTest) consumer(opts ...kgo.Opt) *kgo.Client {
	k.t.Helper()
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(k.brokers...), kgo.ConsumerGroup(k.group), kgo.ConsumeTopics(k.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500 * time.Millisecond),
	}, append(opts, idemkafka.ClientOpts()...)...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(cl.Close)
	return cl
}

// consume runs idemkafka.Consume on cl until stop is called (or the test
// ends), which waits for it to return, requires nil, and closes cl.
func (k *kafkaTest) consume(cl *kgo.Client, fn idemkafka.Func, opts ...idemkafka.Option) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	opts = append([]idemkafka.Option{idemkafka.WithLogger(quiet), idemkafka.WithBackoff(20*time.Millisecond, 200*time.Millisecond)}, opts...)
	go func() { errc <- idemkafka.Consume(ctx, cl, k.store, fn, opts...) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				k.t.Errorf("Consume: %v", err)
			}
			cl.Close()
		})
	}
	k.t.Cleanup(stop)
	return stop
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// committed is the group's committed offset of a partition, -1 if none.
func (k *kafkaTest) committed(p int32) int64 {
	commits, err := k.adm.FetchOffsets(k.t.Context(), k.group)
	if err != nil {
		k.t.Errorf("group offsets: %v", err)
		return -1
	}
	if c, ok := commits.Lookup(k.topic, p); ok && c.Err == nil {
		return c.At
	}
	return -1
}

// gate holds a handler inside its first call until opened: held is closed
// once it is held. It opens when the test ends, so that no handler is left
// waiting while the consumers stop.
type gate struct {
	held, release         chan struct{}
	holdOnce, releaseOnce sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{held: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

// hold holds the first caller until the gate opens; later callers pass.
func (g *gate) hold() {
	g.holdOnce.Do(func() {
		close(g.held)
		<-g.release
	})
}

func (g *gate) open() { g.releaseOnce.Do(func() { close(g.release) }) }
