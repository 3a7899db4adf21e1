package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemkafka"
)

// OrderEvent is a record's value; its ID is also the "event-id" header and
// its order the record key, so that an order's events share a partition
// and keep their order.
type OrderEvent struct {
	ID    string `json:"id"`
	Order string `json:"order"`
	Kind  string `json:"kind"`
}

// The events, in three waves. ev-2 and ev-5 are produced twice (the producer
// retried a send whose answer it lost); ev-6 is held in its handler while
// a second consumer joins the group.
var (
	firstWave = []OrderEvent{
		{"ev-1", "o-1", "created"}, {"ev-2", "o-1", "paid"}, {"ev-3", "o-2", "created"}, {"ev-4", "o-3", "created"},
	}
	secondWave = []OrderEvent{
		{"ev-5", "o-2", "paid"}, {"ev-6", "o-3", "paid"}, {"ev-7", "o-1", "shipped"},
		{"ev-8", "o-4", "created"}, {"ev-9", "o-2", "shipped"},
	}
	// The third wave is produced once the second consumer has a partition.
	thirdWave = []OrderEvent{
		{"ev-10", "o-5", "created"}, {"ev-11", "o-6", "created"}, {"ev-12", "o-7", "created"},
		{"ev-13", "o-8", "created"}, {"ev-14", "o-9", "created"}, {"ev-15", "o-10", "created"},
	}
	resent = []string{"ev-2", "ev-5"}
	slow   = "ev-6"
)

const partitions = 3

// Report is what a run did and whether it kept every promise.
type Report struct {
	Scenarios report.Scenarios
	Produced  int            // records produced
	Applied   map[string]int // event ID → applications
	Replayed  int            // records skipped as already handled
	DiedWith  []string       // events the consumer that died applied
	BySecond  int            // events the consumer that joined applied
	Lag       int64          // the group's lag at the end
}

// OK reports whether every scenario kept its promises.
func (r *Report) OK() bool { return r.Scenarios.OK() }

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	r.Scenarios.Print(w)
	total := 0
	for _, n := range r.Applied {
		total += n
	}
	fmt.Fprintf(w, "\nrecords produced         %4d  (%d events)\n", r.Produced, allEvents())
	fmt.Fprintf(w, "  skipped as handled     %4d\n", r.Replayed)
	fmt.Fprintf(w, "events applied           %4d  (%d by the consumer that joined)\n", total, r.BySecond)
	fmt.Fprintf(w, "group lag at the end     %4d\n", r.Lag)
	if r.OK() {
		fmt.Fprintln(w, "\nevery order event was applied exactly once")
	} else {
		fmt.Fprintln(w, "\nFAILED: see the scenarios marked FAIL above")
	}
}

// Scenario is one named situation and what came of it.
type Scenario = report.Scenario

// demo is one run: its topic and group, the store, and what happened.
type demo struct {
	brokers []string
	topic   string
	group   string
	store   idem.Store
	adm     *kadm.Client
	quiet   *slog.Logger

	mu       sync.Mutex
	rep      *Report
	replayed map[string]int // event ID → replays
}

// Run creates a topic, produces the first wave, lets a consumer apply it
// and die before its commit, produces the second wave, runs a consumer
// that is held on ev-6 while a second one joins, produces the third wave,
// waits until every event is applied and the group's lag is 0, and deletes
// the topic and group.
func Run(ctx context.Context, store idem.Store, brokers []string) (*Report, error) {
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	name := "idemkit-kafka-consumer-" + strings.ToLower(rand.Text()[:10])
	d := &demo{brokers: brokers, topic: name, group: name + "-projector", store: store, adm: kadm.NewClient(admCl),
		quiet: slog.New(slog.NewTextHandler(io.Discard, nil)), rep: &Report{Applied: map[string]int{}}, replayed: map[string]int{}}
	if resp, err := d.adm.CreateTopic(ctx, partitions, 1, nil, d.topic); err != nil || resp.Err != nil {
		return nil, fmt.Errorf("creating topic %s: %w", d.topic, errors.Join(err, resp.Err))
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = d.adm.DeleteGroups(ctx, d.group)
		_, _ = d.adm.DeleteTopics(ctx, d.topic)
	}()

	if err := d.produce(ctx, firstWave, resent); err != nil {
		return nil, err
	}
	died, err := d.dieBeforeCommit(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.produce(ctx, secondWave, resent); err != nil {
		return nil, err
	}
	rebalance, err := d.rebalanceMidBatch(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range d.replayed {
		d.rep.Replayed += n
	}
	d.rep.Scenarios = append(d.rep.Scenarios, d.resentScenario(), d.diedScenario(died), rebalance, d.drainedScenario())
	return d.rep, nil
}

// allEvents is how many events the waves hold.
func allEvents() int { return len(firstWave) + len(secondWave) + len(thirdWave) }

// produce produces the events of wave, then again those of it named in
// again, and waits for the acks.
func (d *demo) produce(ctx context.Context, wave []OrderEvent, again []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.brokers...), kgo.DefaultProduceTopic(d.topic))
	if err != nil {
		return err
	}
	defer cl.Close()
	var recs []*kgo.Record
	add := func(ev OrderEvent) {
		v, _ := json.Marshal(ev)
		recs = append(recs, &kgo.Record{Key: []byte(ev.Order), Value: v, Headers: []kgo.RecordHeader{{Key: "event-id", Value: []byte(ev.ID)}}})
	}
	for _, ev := range wave {
		add(ev)
	}
	for _, ev := range wave {
		for _, id := range again {
			if ev.ID == id {
				add(ev)
			}
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("producing: %w", err)
	}
	d.rep.Produced += len(recs)
	return nil
}

// apply is the side effect: order ev.Order is now ev.Kind.
func (d *demo) apply(r *kgo.Record) (string, error) {
	var ev OrderEvent
	if err := json.Unmarshal(r.Value, &ev); err != nil {
		return "", idem.Permanent(fmt.Errorf("record %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rep.Applied[ev.ID]++
	return ev.ID, nil
}

// options are every consumer's: keyed by the event-id header, quiet,
// replays counted.
func (d *demo) options(more ...idemkafka.Option) []idemkafka.Option {
	return append([]idemkafka.Option{
		idemkafka.WithKey(idemkafka.Header("event-id")),
		idemkafka.WithLogger(d.quiet),
		idemkafka.WithOnReplay(func(_ context.Context, r *kgo.Record, _ string) {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.replayed[eventID(r)]++
		}),
	}, more...)
}

// client is a group consumer of the topic from its start with
// idemkafka's options; a heartbeat every 250ms, so a rebalance is heard of
// soon.
func (d *demo) client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append(append([]kgo.Opt{
		kgo.SeedBrokers(d.brokers...), kgo.ConsumerGroup(d.group), kgo.ConsumeTopics(d.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.HeartbeatInterval(250 * time.Millisecond),
	}, opts...), idemkafka.ClientOpts()...)...)
}

func eventID(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == "event-id" {
			return string(h.Value)
		}
	}
	return ""
}

// consume runs idemkafka.Consume on cl in a goroutine; its error comes on
// the channel.
func (d *demo) consume(ctx context.Context, cl *kgo.Client, fn idemkafka.Func, opts ...idemkafka.Option) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- idemkafka.Consume(ctx, cl, d.store, fn, d.options(opts...)...) }()
	return errc
}

// dieBeforeCommit runs a consumer whose first OffsetCommit never reaches
// the broker: its connection refuses to send it and ends the consumer's
// context, as a process that died between its side effects and its commit.
func (d *demo) dieBeforeCommit(ctx context.Context) (Scenario, error) {
	s := Scenario{Name: "consumer died after applying, before committing"}
	ctx, die := context.WithCancel(ctx)
	defer die()
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, host)
		if err != nil {
			return nil, err
		}
		return &noCommit{Conn: c, die: die}, nil
	}
	cl, err := d.client(kgo.Dialer(dial), kgo.RequestRetries(0))
	if err != nil {
		return s, err
	}
	defer cl.Close()
	errc := d.consume(ctx, cl, func(ctx context.Context, r *kgo.Record) error {
		id, err := d.apply(r)
		if err == nil {
			d.mu.Lock()
			d.rep.DiedWith = append(d.rep.DiedWith, id)
			d.mu.Unlock()
		}
		return err
	})
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		s.Failures = append(s.Failures, "the consumer never got to its commit")
		die()
	}
	if err := <-errc; err != nil {
		return s, fmt.Errorf("the consumer that dies: %w", err)
	}
	if n, err := d.committed(ctx); err == nil && n > 0 {
		s.Failures = append(s.Failures, fmt.Sprintf("%d partitions were committed, want none", n))
	}
	return s, nil
}

// noCommit is a broker connection that refuses to write OffsetCommit
// requests (API key 8, after the 4-byte length) and then ends its
// consumer.
type noCommit struct {
	net.Conn
	die func()
}

func (c *noCommit) Write(b []byte) (int, error) {
	if len(b) >= 6 && binary.BigEndian.Uint16(b[4:6]) == 8 {
		c.die()
		return 0, errors.New("the consumer died before its commit")
	}
	return c.Conn.Write(b)
}

// committed is how many partitions of the topic the group has committed.
func (d *demo) committed(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	commits, err := d.adm.FetchOffsets(ctx, d.group)
	if err != nil {
		return 0, err
	}
	n := 0
	commits.Each(func(o kadm.OffsetResponse) {
		if o.Topic == d.topic && o.Err == nil && o.At >= 0 {
			n++
		}
	})
	return n, nil
}

// lag is the group's lag: the records after its committed offsets.
func (d *demo) lag(ctx context.Context) (int64, error) {
	ends, err := d.adm.ListEndOffsets(ctx, d.topic)
	if err != nil {
		return 0, err
	}
	commits, err := d.adm.FetchOffsets(ctx, d.group)
	if err != nil {
		return 0, err
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		done := int64(0)
		if c, ok := commits.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			done = c.At
		}
		lag += o.Offset - done
	})
	return lag, nil
}
