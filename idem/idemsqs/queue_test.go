package idemsqs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemlambda"
	"github.com/idemkit/idemkit/idem/idemsqs"
	"github.com/idemkit/idemkit/internal/storetest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The tests run real consumers against a real queue on each SQS server
// (moto), with each idem.Store, and count side effects per logical message:
// exactly one each, none lost, and the queue drained (0 visible, 0 in
// flight) at the end.
//
// testenv's moto handles one request at a time, so a long poll there holds
// every other request (DynamoDB's too) for its whole wait: the consumers
// short-poll (WithWaitTime(0)). Visibility timeouts are 1 s, so redeliveries
// come within a test's few seconds.

const visibility = time.Second

// queueTest is one test's queue, client and the side effects counted.
type queueTest struct {
	t      *testing.T
	client *sqs.Client
	url    string
	store  idem.Store

	mu      sync.Mutex
	applied map[string]int // logical event ID → times its side effect happened
}

// eachQueue runs fn on a fresh queue of each SQS server, with each store.
func eachQueue(t *testing.T, fn func(q *queueTest)) {
	for _, srv := range testenv.SQSServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, s idem.Store) {
				c := srv.Client(t)
				url := testenv.Queue(t, c, map[string]string{"VisibilityTimeout": fmt.Sprint(int(visibility / time.Second))})
				fn(&queueTest{t: t, client: c, url: url, store: s, applied: map[string]int{}})
			})
		})
	}
}

// send sends one message per event ID, in order, the ID in the "event-id"
// attribute and the body.
func (q *queueTest) send(ids ...string) {
	q.t.Helper()
	for _, id := range ids {
		_, err := q.client.SendMessage(q.t.Context(), &sqs.SendMessageInput{
			QueueUrl:    aws.String(q.url),
			MessageBody: aws.String(`{"event":"` + id + `"}`),
			MessageAttributes: map[string]types.MessageAttributeValue{
				"event-id": {DataType: aws.String("String"), StringValue: aws.String(id)},
			},
		})
		if err != nil {
			q.t.Fatalf("sending %s: %v", id, err)
		}
	}
}

// apply is the side effect: it counts the message's event.
func (q *queueTest) apply(m types.Message) int {
	id := aws.ToString(m.MessageAttributes["event-id"].StringValue)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.applied[id]++
	return q.applied[id]
}

func (q *queueTest) total() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, c := range q.applied {
		n += c
	}
	return n
}

// checkOnce requires every event of ids applied exactly once, and nothing
// else.
func (q *queueTest) checkOnce(ids ...string) {
	q.t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for id := range want {
		if got := q.applied[id]; got != 1 {
			q.t.Errorf("event %s applied %d times, want 1", id, got)
		}
	}
	for id, n := range q.applied {
		if !want[id] {
			q.t.Errorf("event %s applied %d times, want none", id, n)
		}
	}
}

// waitFor polls cond until it holds, failing the test after d.
func (q *queueTest) waitFor(d time.Duration, what string, cond func() bool) {
	q.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			q.t.Fatalf("after %v: still waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drained waits until the queue holds no message, visible or in flight.
func (q *queueTest) drained() {
	q.t.Helper()
	q.waitFor(10*time.Second, "the queue to drain", func() bool {
		v, f, err := testenv.QueueDepth(q.t.Context(), q.client, q.url)
		if err != nil {
			q.t.Fatal(err)
		}
		return v+f == 0
	})
}

// consume runs idemsqs.Consume on c until stop is called, which waits for it
// to return and requires it to return nil.
func (q *queueTest) consume(c idemsqs.Client, fn func(context.Context, types.Message) error, opts ...idemsqs.Option) (stop func()) {
	ctx, cancel := context.WithCancel(q.t.Context())
	return q.consumeUntil(ctx, cancel, c, fn, opts...)
}

// consumeUntil is consume, ending when ctx does.
func (q *queueTest) consumeUntil(ctx context.Context, cancel func(), c idemsqs.Client, fn func(context.Context, types.Message) error, opts ...idemsqs.Option) (stop func()) {
	errc := make(chan error, 1)
	opts = append([]idemsqs.Option{
		idemsqs.WithVisibility(visibility), idemsqs.WithWaitTime(0), idemsqs.WithLogger(quiet),
	}, opts...)
	go func() { errc <- idemsqs.Consume(ctx, c, q.url, q.store, fn, opts...) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				q.t.Errorf("Consume: %v", err)
			}
		})
	}
	q.t.Cleanup(stop)
	return stop
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// crashBeforeDelete is a transport that lets one consumer's requests through
// until its first DeleteMessage: that one, and every request after it, fail
// without reaching the server, and crash is called: the consumer is dead
// after its side effect and before its delete.
type crashBeforeDelete struct {
	next    http.RoundTripper
	crash   func()
	crashed atomic.Bool
}

func (c *crashBeforeDelete) RoundTrip(r *http.Request) (*http.Response, error) {
	if !c.crashed.Load() && r.Header.Get("X-Amz-Target") == "AmazonSQS.DeleteMessage" {
		c.crashed.Store(true)
		c.crash()
	}
	if c.crashed.Load() {
		return nil, errors.New("crashed")
	}
	return c.next.RoundTrip(r)
}

// counting wraps a client and counts the deliveries of each message ID.
type counting struct {
	*sqs.Client
	receives   atomic.Int32
	mu         sync.Mutex
	deliveries map[string]int
}

func (c *counting) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := c.Client.ReceiveMessage(ctx, in, optFns...)
	c.receives.Add(1)
	if err == nil {
		c.mu.Lock()
		for _, m := range out.Messages {
			c.deliveries[aws.ToString(m.MessageId)]++
		}
		c.mu.Unlock()
	}
	return out, err
}

func (c *counting) count() (messages, deliveries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.deliveries {
		messages++
		deliveries += n
	}
	return messages, deliveries
}

// TestCrashBeforeDelete: a consumer applies an event and dies before its
// delete; the message comes back after the visibility timeout, and the
// second consumer skips it (a replay), deletes it, and the event stays
// applied once.
func TestCrashBeforeDelete(t *testing.T) {
	eachQueue(t, func(q *queueTest) {
		q.send("e1")
		// The crash ends the first consumer's context before its
		// DeleteMessage returns: it makes no request after that one.
		ctx, crash := context.WithCancel(t.Context())
		tr := &crashBeforeDelete{next: testenv.NewDynamoDBTransport(), crash: crash}
		dying := q.client.Options().Copy()
		dying.HTTPClient = &http.Client{Transport: tr}
		stopFirst := q.consumeUntil(ctx, crash, sqs.New(dying), func(ctx context.Context, m types.Message) error {
			q.apply(m)
			return nil
		})
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the first consumer never got to its delete")
		}
		stopFirst()
		if q.total() != 1 {
			t.Fatalf("the first consumer applied %d events before it died, want 1", q.total())
		}

		var replays atomic.Int32
		q.consume(q.client, func(ctx context.Context, m types.Message) error {
			q.apply(m)
			return nil
		}, idemsqs.WithOnReplay(func(context.Context, string) { replays.Add(1) }))
		q.waitFor(10*time.Second, "the redelivery to be skipped", func() bool { return replays.Load() >= 1 })
		q.drained()
		q.checkOnce("e1")
		if n := replays.Load(); n != 1 {
			t.Errorf("%d replays, want 1 (the one redelivery)", n)
		}
	})
}

// TestSlowHandlerExtended: a handler that runs for three visibility
// timeouts while a second consumer polls the queue; Consume extends the
// message's visibility, so the second consumer never receives it, and the
// event is applied once.
func TestSlowHandlerExtended(t *testing.T) {
	eachQueue(t, func(q *queueTest) {
		q.send("slow")
		started := make(chan struct{})
		release := make(chan struct{})
		ext := &extending{Client: q.client}
		q.consume(ext, func(ctx context.Context, m types.Message) error {
			close(started)
			<-release
			q.apply(m)
			return nil
		})
		<-started
		other := &counting{Client: q.client, deliveries: map[string]int{}}
		q.consume(other, func(ctx context.Context, m types.Message) error {
			q.apply(m)
			return nil
		})
		// Let the other consumer poll for three visibility timeouts: each
		// of its receives is a chance to get the message if it is visible.
		until := time.Now().Add(3 * visibility)
		q.waitFor(10*time.Second, "three visibility timeouts of polling", func() bool {
			return time.Now().After(until) && other.receives.Load() > 10
		})
		_, n := other.count()
		switch slowest := ext.slowest(); {
		case ext.calls() == 0:
			t.Error("Consume never extended the message's visibility")
		case n != 0 && slowest < visibility/2:
			t.Errorf("the other consumer received the slow message %d times while it was handled, want 0 (the slowest extension took %v)", n, slowest)
		case n != 0:
			// An extension that took half the timeout on a loaded server
			// can land after it: the copy then finds the event in progress.
			t.Logf("redelivered %d times mid-work: an extension took %v of the %v timeout", n, slowest, visibility)
		}
		close(release)
		q.drained()
		q.checkOnce("slow")
	})
}

// TestSlowHandlerNotExtended: without the extension (messages received
// raw and fed to idemlambda.SQS), the slow message is redelivered to a
// second consumer mid-work; its copy gets in-progress (a batch item
// failure) and is left undeleted, and is skipped once the first consumer has
// finished: the event is applied once.
func TestSlowHandlerNotExtended(t *testing.T) {
	eachQueue(t, func(q *queueTest) {
		q.send("slow")
		release := make(chan struct{})
		handler, err := idemlambda.SQS(q.store, func(ctx context.Context, m events.SQSMessage) error {
			if m.Attributes["ApproximateReceiveCount"] == "1" {
				<-release
			}
			q.mu.Lock()
			q.applied[aws.ToString(m.MessageAttributes["event-id"].StringValue)]++
			q.mu.Unlock()
			return nil
		}, idemlambda.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}

		var first []types.Message
		q.waitFor(10*time.Second, "the first delivery", func() bool {
			first = q.receive(visibility)
			return len(first) == 1
		})
		done := make(chan []string)
		go func() { done <- q.feed(handler, first) }()

		// The copy comes back after the visibility timeout.
		var second []types.Message
		q.waitFor(10*time.Second, "the redelivery mid-work", func() bool {
			second = q.receive(0)
			return len(second) == 1
		})
		if got := receiveCount(second[0]); got != "2" {
			t.Errorf("ApproximateReceiveCount of the redelivery %s, want 2", got)
		}
		if left := q.feed(handler, second); len(left) != 1 {
			t.Fatalf("the redelivery mid-work was deleted (left %v), want it left for later", left)
		}
		close(release)
		if left := <-done; len(left) != 0 {
			t.Fatalf("the first delivery was left %v, want it deleted", left)
		}
		// The second copy is visible again after its timeout; its next
		// delivery is skipped and deleted.
		q.waitFor(10*time.Second, "the queue to drain", func() bool {
			q.feed(handler, q.receive(0))
			v, f, err := testenv.QueueDepth(t.Context(), q.client, q.url)
			return err == nil && v+f == 0
		})
		q.checkOnce("slow")
	})
}

// TestLogicalDuplicates: five events, each sent as three messages (a
// producer's retries). Keyed by the event ID, each is applied once; keyed
// by message ID (the default), the test's checker sees the duplicates: one
// side effect per message the queue held. (The SDK may send a message
// twice itself, when a loaded server answers a SendMessage late: that one
// is a message more in the queue, counted by the messages delivered.)
func TestLogicalDuplicates(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	var sent []string
	for range 3 {
		sent = append(sent, ids...)
	}
	for _, tc := range []struct {
		name    string
		opts    []idemsqs.Option
		byEvent bool // one side effect per event, not per message
	}{
		{"event-id", []idemsqs.Option{idemsqs.WithKey(idemsqs.Attribute("event-id"))}, true},
		{"message-id", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachQueue(t, func(q *queueTest) {
				q.send(sent...)
				counted := &counting{Client: q.client, deliveries: map[string]int{}}
				for range 2 {
					q.consume(counted, func(ctx context.Context, m types.Message) error {
						q.apply(m)
						return nil
					}, tc.opts...)
				}
				q.drained()
				messages, _ := counted.count()
				want := messages
				if tc.byEvent {
					want = len(ids)
				}
				if got := q.total(); got != want || messages < len(sent) {
					t.Fatalf("%d side effects for %d messages delivered (%d sent) of %d events, want %d", got, messages, len(sent), len(ids), want)
				}
				if tc.byEvent {
					q.checkOnce(ids...)
				}
			})
		})
	}
}

// TestBatchFailures feeds batches received from the queue to
// idemlambda.SQS and deletes what it does not list as failed, as an event
// source mapping with ReportBatchItemFailures does. A flaky event fails its
// first attempt and a poison one fails permanently: exactly the flaky one's
// message is left undeleted, comes back, and succeeds; every event is
// applied once.
func TestBatchFailures(t *testing.T) {
	eachQueue(t, func(q *queueTest) {
		ids := []string{"ok1", "flaky", "ok2", "poison", "ok3"}
		q.send(ids...)
		var mu sync.Mutex
		attempts := map[string]int{}
		handler, err := idemlambda.SQS(q.store, func(ctx context.Context, m events.SQSMessage) error {
			id := aws.ToString(m.MessageAttributes["event-id"].StringValue)
			mu.Lock()
			attempts[id]++
			n := attempts[id]
			mu.Unlock()
			switch {
			case id == "flaky" && n == 1:
				return errors.New("flaky: try again")
			case id == "poison":
				return idem.Permanent(errors.New("poison"))
			}
			q.mu.Lock()
			q.applied[id]++
			q.mu.Unlock()
			return nil
		}, idemlambda.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		q.waitFor(10*time.Second, "all five events", func() bool {
			left = append(left, q.feed(handler, q.receive(0))...)
			return q.total() == 4
		})
		q.drained()
		q.checkOnce("ok1", "flaky", "ok2", "ok3")
		if len(left) != 1 || left[0] != "flaky" {
			t.Errorf("left undeleted %v, want [flaky]", left)
		}
		if attempts["flaky"] != 2 || attempts["poison"] != 1 {
			t.Errorf("attempts %v, want flaky twice and poison once", attempts)
		}
	})
}

// receive receives up to 10 messages with visibility timeout vis (0: the
// queue's), short-polling.
func (q *queueTest) receive(vis time.Duration) []types.Message {
	q.t.Helper()
	out, err := q.client.ReceiveMessage(q.t.Context(), &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(q.url),
		MaxNumberOfMessages:         10,
		VisibilityTimeout:           int32(vis / time.Second),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		q.t.Errorf("receiving: %v", err)
		return nil
	}
	return out.Messages
}

// feed hands msgs to an idemlambda.SQS handler as one event, deletes the
// messages it does not list as failed, and returns the event IDs of those
// it does.
func (q *queueTest) feed(handler func(context.Context, events.SQSEvent) (events.SQSEventResponse, error), msgs []types.Message) (left []string) {
	if len(msgs) == 0 {
		return nil
	}
	ev := events.SQSEvent{}
	for _, m := range msgs {
		ev.Records = append(ev.Records, lambdaMessage(m))
	}
	resp, err := handler(q.t.Context(), ev)
	if err != nil {
		q.t.Errorf("idemlambda.SQS: %v", err)
		return nil
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	for _, m := range msgs {
		if failed[aws.ToString(m.MessageId)] {
			left = append(left, aws.ToString(m.MessageAttributes["event-id"].StringValue))
			continue
		}
		if _, err := q.client.DeleteMessage(q.t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(q.url), ReceiptHandle: m.ReceiptHandle}); err != nil {
			q.t.Errorf("deleting: %v", err)
		}
	}
	return left
}

// lambdaMessage is m as an SQS event source mapping delivers it.
func lambdaMessage(m types.Message) events.SQSMessage {
	attrs := map[string]events.SQSMessageAttribute{}
	for k, a := range m.MessageAttributes {
		attrs[k] = events.SQSMessageAttribute{DataType: aws.ToString(a.DataType), StringValue: a.StringValue}
	}
	return events.SQSMessage{
		MessageId:         aws.ToString(m.MessageId),
		ReceiptHandle:     aws.ToString(m.ReceiptHandle),
		Body:              aws.ToString(m.Body),
		Md5OfBody:         aws.ToString(m.MD5OfBody),
		Attributes:        m.Attributes,
		MessageAttributes: attrs,
		EventSource:       "aws:sqs",
	}
}

func receiveCount(m types.Message) string {
	return m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]
}

// extending records how long the ChangeMessageVisibility calls made
// through it took.
type extending struct {
	*sqs.Client
	mu    sync.Mutex
	n     int
	worst time.Duration
}

func (c *extending) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	t0 := time.Now()
	out, err := c.Client.ChangeMessageVisibility(ctx, in, optFns...)
	c.mu.Lock()
	c.n++
	c.worst = max(c.worst, time.Since(t0))
	c.mu.Unlock()
	return out, err
}

func (c *extending) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *extending) slowest() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.worst
}

// TestFIFOAfterDedupWindow: a FIFO queue drops a re-sent message only
// while its deduplication ID is remembered (five minutes). A producer that
// re-sends event e1 after that window, or with a new deduplication ID,
// gets a second message through; so does one whose retry the queue did
// drop, here e2 sent twice with one ID. The queue delivers e1 twice and e2
// once; keyed by the event ID, each event is applied once, in the group's
// order.
func TestFIFOAfterDedupWindow(t *testing.T) {
	for _, srv := range testenv.SQSServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, s idem.Store) {
				c := srv.Client(t)
				url := testenv.Queue(t, c, map[string]string{"FifoQueue": "true", "VisibilityTimeout": "1"})
				q := &queueTest{t: t, client: c, url: url, store: s, applied: map[string]int{}}
				for _, m := range []struct{ id, dedup string }{{"e1", "e1-first"}, {"e2", "e2"}, {"e2", "e2"}, {"e1", "e1-after-the-window"}, {"e3", "e3"}} {
					q.sendFIFO(m.id, m.dedup)
				}
				counted := &counting{Client: c, deliveries: map[string]int{}}
				var order []string
				var mu sync.Mutex
				q.consume(counted, func(ctx context.Context, m types.Message) error {
					mu.Lock()
					order = append(order, aws.ToString(m.MessageAttributes["event-id"].StringValue))
					mu.Unlock()
					q.apply(m)
					return nil
				}, idemsqs.WithKey(idemsqs.Attribute("event-id")))
				q.drained()
				q.checkOnce("e1", "e2", "e3")
				if messages, _ := counted.count(); messages != 4 {
					t.Errorf("the queue delivered %d messages, want 4 (e1 twice, e2's retry dropped)", messages)
				}
				mu.Lock()
				defer mu.Unlock()
				if fmt.Sprint(order) != "[e1 e2 e3]" {
					t.Errorf("applied in the order %v, want [e1 e2 e3]", order)
				}
			})
		})
	}
}

// sendFIFO sends event id to a FIFO queue, in one message group, with the
// deduplication ID dedup.
func (q *queueTest) sendFIFO(id, dedup string) {
	q.t.Helper()
	_, err := q.client.SendMessage(q.t.Context(), &sqs.SendMessageInput{
		QueueUrl:               aws.String(q.url),
		MessageBody:            aws.String(`{"event":"` + id + `"}`),
		MessageGroupId:         aws.String("orders"),
		MessageDeduplicationId: aws.String(dedup),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"event-id": {DataType: aws.String("String"), StringValue: aws.String(id)},
		},
	})
	if err != nil {
		q.t.Fatalf("sending %s (deduplication ID %s): %v", id, dedup, err)
	}
}
