package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem/idemkafka"
)

// rebalanceMidBatch runs the restarted consumer, holds it inside ev-6's
// handler until a second consumer has joined and the first one's Consume
// knows the rebalance waits (it logs idemkafka.RebalanceWaits), produces
// the third wave once the second consumer has a partition, and lets both
// run until every event is applied and the lag is 0.
func (d *demo) rebalanceMidBatch(ctx context.Context) (Scenario, error) {
	s := Scenario{Name: "second consumer joined while " + slow + " was in its handler"}
	held, release := make(chan struct{}), make(chan struct{})
	var holdOnce, releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseAll()
	waits := make(chan struct{}, 1)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()

	first, err := d.client()
	if err != nil {
		return s, err
	}
	defer first.Close()
	firstErr := d.consume(runCtx, first, func(ctx context.Context, r *kgo.Record) error {
		if eventID(r) == slow {
			holdOnce.Do(func() { close(held); <-release })
		}
		_, err := d.apply(r)
		return err
	}, idemkafka.WithLogger(slog.New(&signal{msg: idemkafka.RebalanceWaits, c: waits})))
	heard, secondDone := false, func() error { return nil }
	assigned := make(chan struct{}, 1)
	if d.await(held, "the restarted consumer never got to "+slow, &s) {
		heard, secondDone = d.join(runCtx, &s, waits, assigned)
	}
	releaseAll()
	if heard && d.await(assigned, "the second consumer was never assigned a partition", &s) {
		if err := d.produce(ctx, thirdWave, nil); err != nil {
			return s, errors.Join(err, secondDone())
		}
	}
	d.waitDrained(ctx, &s)
	stop()
	if err := errors.Join(<-firstErr, secondDone()); err != nil {
		return s, err
	}
	if heard {
		s.Outcome = fmt.Sprintf("%s finished and committed before its partition could move; then the joiner applied %d", slow, d.rep.BySecond)
	}
	if n := d.rep.Applied[slow]; n != 1 {
		s.Failures = append(s.Failures, fmt.Sprintf("%s applied %d times, want once", slow, n))
	}
	return s, nil
}

// join starts the second consumer, which runs until ctx ends and sends on
// assigned when it gets a partition, and waits until the first one hears
// of the rebalance. done waits for the second consumer to return and
// closes it.
func (d *demo) join(ctx context.Context, s *Scenario, waits <-chan struct{}, assigned chan<- struct{}) (heard bool, done func() error) {
	second, err := d.client(kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
		if len(a[d.topic]) > 0 {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}
	}))
	if err != nil {
		return false, func() error { return err }
	}
	var applied atomic.Int32
	errc := d.consume(ctx, second, func(ctx context.Context, r *kgo.Record) error {
		_, err := d.apply(r)
		if err == nil {
			applied.Add(1)
		}
		return err
	})
	done = func() error {
		defer second.Close()
		err := <-errc
		d.rep.BySecond = int(applied.Load())
		if err != nil {
			return fmt.Errorf("the second consumer: %w", err)
		}
		return nil
	}
	return d.await(waits, "the first consumer never heard of the rebalance", s), done
}

// await waits up to 30 s for c, and notes the failure if it never comes.
func (d *demo) await(c <-chan struct{}, failure string, s *Scenario) bool {
	select {
	case <-c:
		return true
	case <-time.After(30 * time.Second):
		s.Failures = append(s.Failures, failure)
		return false
	}
}

// waitDrained waits up to a minute until every event is applied and the
// group's lag is 0.
func (d *demo) waitDrained(ctx context.Context, s *Scenario) {
	all := allEvents()
	deadline := time.Now().Add(time.Minute)
	for {
		d.mu.Lock()
		applied := len(d.rep.Applied)
		d.mu.Unlock()
		lag, err := d.lag(ctx)
		if err == nil {
			d.rep.Lag = lag
		}
		if applied == all && err == nil && lag == 0 {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Failures = append(s.Failures, fmt.Sprintf("after a minute: %d of %d events applied, lag %d (%v)", applied, all, lag, err))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *demo) resentScenario() Scenario {
	return Scenario{Name: "producer re-sent " + strings.Join(resent, " and ") + " at new offsets",
		Outcome:  fmt.Sprintf("%d records, %d events, the copies skipped by event-id", d.rep.Produced, allEvents()),
		Failures: d.once(resent...)}
}

func (d *demo) diedScenario(s Scenario) Scenario {
	if len(d.rep.DiedWith) == 0 {
		s.Failures = append(s.Failures, "the consumer died before applying an event")
		return s
	}
	s.Outcome = fmt.Sprintf("its events (%s) came back from the last commit and were skipped", strings.Join(d.rep.DiedWith, " "))
	s.Failures = append(s.Failures, d.once(d.rep.DiedWith...)...)
	for _, id := range d.rep.DiedWith {
		if d.replayed[id] == 0 {
			s.Failures = append(s.Failures, id+" did not come back to be skipped")
		}
	}
	return s
}

func (d *demo) drainedScenario() Scenario {
	var all []string
	for _, ev := range append(append(append([]OrderEvent(nil), firstWave...), secondWave...), thirdWave...) {
		all = append(all, ev.ID)
	}
	s := Scenario{Name: "every record committed", Outcome: fmt.Sprintf("group lag %d", d.rep.Lag), Failures: d.once(all...)}
	if d.rep.Lag != 0 {
		s.Failures = append(s.Failures, fmt.Sprintf("lag %d, want 0", d.rep.Lag))
	}
	return s
}

// once lists the events of ids not applied exactly once.
func (d *demo) once(ids ...string) (fails []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		if n := d.rep.Applied[id]; n != 1 {
			fails = append(fails, fmt.Sprintf("%s applied %d times, want once", id, n))
		}
	}
	return fails
}

// signal is a slog.Handler that sends on c when a record with the message
// msg is logged.
type signal struct {
	msg string
	c   chan struct{}
}

func (h *signal) Enabled(context.Context, slog.Level) bool { return true }
func (h *signal) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *signal) WithGroup(string) slog.Handler            { return h }
func (h *signal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.c <- struct{}{}:
		default:
		}
	}
	return nil
}
