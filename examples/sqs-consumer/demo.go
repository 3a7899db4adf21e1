package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemsqs"
)

// Config shapes a demo run.
type Config struct {
	// Wait is the consumers' long-polling wait (0: short polling).
	Wait time.Duration
}

// visibility is the queue's visibility timeout: short, so that a dead
// consumer's message comes back within the demo.
const visibility = time.Second

// OrderEvent is a message's body; its ID is also the "event-id" attribute.
type OrderEvent struct {
	ID    string `json:"id"`
	Order string `json:"order"`
	Kind  string `json:"kind"`
}

// The events, in the order they are sent. ev-2 and ev-5 are sent twice
// (the producer retried a send whose answer it lost); ev-6 takes three
// visibility timeouts to apply.
var (
	orderEvents = []OrderEvent{
		{"ev-1", "o-1", "created"}, {"ev-2", "o-1", "paid"}, {"ev-3", "o-2", "created"},
		{"ev-4", "o-2", "cancelled"}, {"ev-5", "o-3", "created"}, {"ev-6", "o-3", "paid"},
	}
	resent = []string{"ev-2", "ev-5"}
	slow   = "ev-6"
)

// Report is what a run did and whether it kept every promise.
type Report struct {
	Scenarios report.Scenarios
	Sent      int // messages sent
	Received  int // deliveries to the live consumers
	Applied   map[string]int
	Skipped   int // deliveries skipped as already handled
	SkippedOf map[string]int
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
	fmt.Fprintf(w, "\nmessages sent            %4d  (%d events)\n", r.Sent, len(orderEvents))
	fmt.Fprintf(w, "deliveries received      %4d  (by the consumers that lived)\n", r.Received)
	fmt.Fprintf(w, "  skipped as handled     %4d\n", r.Skipped)
	fmt.Fprintf(w, "events applied           %4d\n", total)
	if r.OK() {
		fmt.Fprintln(w, "\nevery order event was applied exactly once")
	} else {
		fmt.Fprintln(w, "\nFAILED: see the scenarios marked FAIL above")
	}
}

// Run creates a queue, sends the events, kills one consumer before its
// first delete, runs two more until every event is applied and the queue is
// empty, and deletes the queue.
func Run(ctx context.Context, store idem.Store, client *sqs.Client, cfg Config) (*Report, error) {
	url, err := createQueue(ctx, client)
	if err != nil {
		return nil, err
	}
	defer deleteQueue(ctx, client, url)

	d := &demo{store: store, client: client, url: url, rep: &Report{Applied: map[string]int{}, SkippedOf: map[string]int{}}}
	if err := d.sendEvents(ctx); err != nil {
		return nil, err
	}
	d.opts = d.options(cfg)
	died, err := d.consumerDies(ctx)
	if err != nil {
		return nil, err
	}
	dr, err := d.drain(ctx)
	if err != nil {
		return nil, err
	}
	d.verdict(died, dr)
	return d.rep, nil
}

// demo is what the steps of one run share: the queue, the consumers'
// options and the report they fill.
type demo struct {
	store  idem.Store
	client *sqs.Client
	url    string
	rep    *Report
	mu     sync.Mutex // guards rep.Applied
	opts   []idemsqs.Option

	skipped sync.Map // event ID → deliveries skipped
	prefix  string   // of every key
}

// createQueue creates the demo's queue, its visibility timeout short.
func createQueue(ctx context.Context, client *sqs.Client) (string, error) {
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName:  aws.String("idemkit-sqs-consumer-" + rand.Text()[:10]),
		Attributes: map[string]string{"VisibilityTimeout": fmt.Sprint(int(visibility / time.Second))},
	})
	if err != nil {
		return "", fmt.Errorf("creating the queue: %w", err)
	}
	return aws.ToString(q.QueueUrl), nil
}

// deleteQueue deletes the queue, even after ctx is done.
func deleteQueue(ctx context.Context, client *sqs.Client, url string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, _ = client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
}

// apply is the consumers' handler: it applies the message's event.
func (d *demo) apply(ctx context.Context, m types.Message) error {
	var ev OrderEvent
	if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
		return idem.Permanent(fmt.Errorf("message %s: %w", aws.ToString(m.MessageId), err))
	}
	if ev.ID == slow {
		select { // slow work: three visibility timeouts
		case <-time.After(3 * visibility):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.mu.Lock()
	d.rep.Applied[ev.ID]++ // the side effect: order ev.Order is now ev.Kind
	d.mu.Unlock()
	return nil
}

// sendEvents sends every event, then the copies the producer re-sent.
func (d *demo) sendEvents(ctx context.Context) error {
	for _, ev := range orderEvents {
		if err := send(ctx, d.client, d.url, ev); err != nil {
			return err
		}
	}
	for _, id := range resent {
		for _, ev := range orderEvents {
			if ev.ID == id {
				if err := send(ctx, d.client, d.url, ev); err != nil {
					return err
				}
			}
		}
	}
	d.rep.Sent = len(orderEvents) + len(resent)
	return nil
}

// options are the consumers' options: keys by event ID in a run of their
// own, and every skipped delivery counted.
func (d *demo) options(cfg Config) []idemsqs.Option {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d.prefix = "sqs-consumer/" + rand.Text()[:10] + "/" // a run of its own in a shared table
	return []idemsqs.Option{
		idemsqs.WithKey(idemsqs.Attribute("event-id")),
		idemsqs.WithKeyPrefix(d.prefix),
		idemsqs.WithVisibility(visibility),
		idemsqs.WithWaitTime(cfg.Wait),
		idemsqs.WithLogger(quiet),
		idemsqs.WithOnReplay(func(_ context.Context, key string) {
			n, _ := d.skipped.LoadOrStore(strings.TrimPrefix(key, d.prefix), new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}),
	}
}

// 1. A consumer that dies after applying its first event and before
// deleting its message: its transport fails from its first
// DeleteMessage on, and its context ends there. consumerDies returns the
// event ID it applied.
func (d *demo) consumerDies(ctx context.Context) (string, error) {
	dyingCtx, die := context.WithCancel(ctx)
	var diedWith atomic.Value // the event ID it applied
	dying := d.client.Options().Copy()
	dying.HTTPClient = &http.Client{Transport: &dieAtDelete{next: http.DefaultTransport, die: die}}
	errc := make(chan error, 1)
	go func() {
		errc <- idemsqs.Consume(dyingCtx, sqs.New(dying), d.url, d.store, func(ctx context.Context, m types.Message) error {
			err := d.apply(ctx, m)
			diedWith.Store(aws.ToString(m.MessageAttributes["event-id"].StringValue))
			return err
		}, append(d.opts, idemsqs.WithMaxMessages(1))...)
	}()
	select {
	case <-dyingCtx.Done():
	case <-time.After(30 * time.Second):
		die()
	}
	if err := <-errc; err != nil {
		return "", fmt.Errorf("the consumer that dies: %w", err)
	}
	died, _ := diedWith.Load().(string)
	return died, nil
}

// drained is what the live consumers left: the deliveries they got and
// the queue at the end.
type drained struct {
	live              *counting
	visible, inFlight int
	err               error // the queue did not drain
}

// 2. Two consumers until every event is applied and the queue is
// empty.
func (d *demo) drain(ctx context.Context) (drained, error) {
	live := &counting{Client: d.client, deliveries: map[string]int{}}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var consumeErr error
	var errOnce sync.Once
	for range 2 {
		wg.Go(func() {
			if err := idemsqs.Consume(runCtx, live, d.url, d.store, d.apply, d.opts...); err != nil {
				errOnce.Do(func() { consumeErr = err })
			}
		})
	}
	visible, inFlight, waitErr := waitDrained(ctx, d.client, d.url, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.rep.Applied) == len(orderEvents)
	})
	stop()
	wg.Wait()
	if consumeErr != nil {
		return drained{}, consumeErr
	}
	d.rep.Received = live.total()
	d.skipped.Range(func(id, n any) bool {
		d.rep.SkippedOf[id.(string)] = int(n.(*atomic.Int32).Load())
		d.rep.Skipped += d.rep.SkippedOf[id.(string)]
		return true
	})
	return drained{live: live, visible: visible, inFlight: inFlight, err: waitErr}, nil
}

// What came of it.
func (d *demo) verdict(died string, dr drained) {
	var all []string
	for _, ev := range orderEvents {
		all = append(all, ev.ID)
	}
	d.rep.Scenarios = append(d.rep.Scenarios,
		Scenario{Name: "producer re-sent ev-2 and ev-5 as new messages",
			Outcome:  fmt.Sprintf("%d messages, %d events, the copies skipped by event ID", d.rep.Sent, len(orderEvents)),
			Failures: d.once(resent...)},
		diedScenario(died, d.rep, d.once),
		slowScenario(dr.live, d.rep, d.once),
		drainedScenario(dr.visible, dr.inFlight, dr.err, d.once(all...)),
	)
}

// once checks that each of ids was applied once.
func (d *demo) once(ids ...string) (fails []string) {
	for _, id := range ids {
		if n := d.rep.Applied[id]; n != 1 {
			fails = append(fails, fmt.Sprintf("%s applied %d times, want once", id, n))
		}
	}
	return fails
}

// Scenario is one named situation and what came of it.
type Scenario = report.Scenario

func diedScenario(died string, rep *Report, once func(...string) []string) Scenario {
	s := Scenario{Name: "consumer died after applying, before deleting"}
	if died == "" {
		s.Failures = []string{"the consumer died before applying an event"}
		return s
	}
	s.Outcome = fmt.Sprintf("%s came back after %v and was skipped", died, visibility)
	s.Failures = once(died)
	if rep.SkippedOf[died] == 0 {
		s.Failures = append(s.Failures, "the dead consumer's message did not come back to be skipped")
	}
	return s
}

func slowScenario(live *counting, rep *Report, once func(...string) []string) Scenario {
	n := live.of(slow)
	s := Scenario{Name: "slow event outlived the visibility timeout",
		Outcome: fmt.Sprintf("%s applied in %v with its visibility extended; delivered %d time(s)", slow, 3*visibility, n)}
	if n > 1 {
		// The extension is a request like any other: on a loaded server it
		// can land after the timeout. The copy then finds the event in
		// progress and is left; the promise is the single application.
		s.Outcome += " (an extension came late; the copy found it in progress and left it)"
	}
	s.Failures = once(slow)
	if n == 0 {
		s.Failures = append(s.Failures, fmt.Sprintf("%s was never delivered to the live consumers", slow))
	}
	return s
}

func drainedScenario(visible, inFlight int, err error, fails []string) Scenario {
	s := Scenario{Name: "queue drained", Outcome: fmt.Sprintf("%d visible, %d in flight", visible, inFlight), Failures: fails}
	if err != nil {
		s.Failures = append(s.Failures, err.Error())
	}
	return s
}

// send sends ev as a new message, its ID in the "event-id" attribute.
func send(ctx context.Context, c *sqs.Client, url string, ev OrderEvent) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(url),
		MessageBody: aws.String(string(body)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"event-id": {DataType: aws.String("String"), StringValue: aws.String(ev.ID)},
		},
	})
	if err != nil {
		return fmt.Errorf("sending %s: %w", ev.ID, err)
	}
	return nil
}

// waitDrained waits until done holds and the queue holds no message,
// visible or in flight, for up to a minute.
func waitDrained(ctx context.Context, c *sqs.Client, url string, done func() bool) (visible, inFlight int, err error) {
	deadline := time.Now().Add(time.Minute)
	for {
		a, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(url),
			AttributeNames: []types.QueueAttributeName{
				types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			},
		})
		if err != nil {
			return 0, 0, fmt.Errorf("queue attributes: %w", err)
		}
		fmt.Sscan(a.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)], &visible)
		fmt.Sscan(a.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)], &inFlight)
		if done() && visible+inFlight == 0 {
			return visible, inFlight, nil
		}
		if time.Now().After(deadline) {
			return visible, inFlight, errors.New("the queue did not drain within a minute")
		}
		select {
		case <-ctx.Done():
			return visible, inFlight, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dieAtDelete is a consumer's transport that fails its first DeleteMessage,
// and every request after it, without sending them, and calls die: the
// process died between applying the event and deleting the message.
type dieAtDelete struct {
	next http.RoundTripper
	die  func()
	dead atomic.Bool
}

func (d *dieAtDelete) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Amz-Target") == "AmazonSQS.DeleteMessage" && !d.dead.Swap(true) {
		d.die()
	}
	if d.dead.Load() {
		return nil, errors.New("the consumer died")
	}
	return d.next.RoundTrip(r)
}

// counting is a client that counts the deliveries of each event ID.
type counting struct {
	*sqs.Client
	mu         sync.Mutex
	deliveries map[string]int
}

func (c *counting) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := c.Client.ReceiveMessage(ctx, in, optFns...)
	if err == nil {
		c.mu.Lock()
		for _, m := range out.Messages {
			c.deliveries[aws.ToString(m.MessageAttributes["event-id"].StringValue)]++
		}
		c.mu.Unlock()
	}
	return out, err
}

func (c *counting) of(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deliveries[id]
}

func (c *counting) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, d := range c.deliveries {
		n += d
	}
	return n
}
