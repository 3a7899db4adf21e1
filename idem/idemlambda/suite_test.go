package idemlambda_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemlambda"
	"github.com/idemkit/idemkit/idem/idemtest"
)

// runSuite runs the wrappers' behaviour tests on the store newStore
// returns: memstore always, real servers when reachable. Every test uses
// keys of its own (a fresh prefix), so the store may be shared.
func runSuite(t *testing.T, newStore func(t *testing.T) idem.Store) {
	s := newStore(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, s idem.Store)
	}{
		{"WrapRunsOnce", testWrapRunsOnce},
		{"WrapErrors", testWrapErrors},
		{"WrapInProgress", testWrapInProgress},
		{"WrapValidation", testWrapValidation},
		{"SQSDeduplicates", testSQSDeduplicates},
		{"SQSPartialFailures", testSQSPartialFailures},
		{"SQSInProgress", testSQSInProgress},
		{"APIGatewayReplays", testAPIGatewayReplays},
		{"APIGatewayConflicts", testAPIGatewayConflicts},
		{"ContextEndsDuringClaim", testContextEndsDuringClaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

// prefix is a key prefix unique to a test run.
func prefix() idemlambda.Option { return idemlambda.WithKeyPrefix("test/" + rand.Text() + "/") }

type order struct {
	ID    string   `json:"id"`
	Items []string `json:"items"`
}

type receipt struct {
	OrderID string `json:"order_id"`
	Run     int64  `json:"run"`
}

// invocation returns a context like the Lambda runtime's: a deadline
// timeout from now.
func invocation(t *testing.T, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func orderKey(o order) (string, error) { return o.ID, nil }

func testWrapRunsOnce(t *testing.T, s idem.Store) {
	var runs atomic.Int64
	var replays []string
	h, err := idemlambda.Wrap(s, orderKey, func(ctx context.Context, o order) (receipt, error) {
		return receipt{OrderID: o.ID, Run: runs.Add(1)}, nil
	}, prefix(), idemlambda.WithOnReplay(func(ctx context.Context, key string) { replays = append(replays, key) }))
	if err != nil {
		t.Fatal(err)
	}
	var first receipt
	for i := range 3 {
		got, err := h(invocation(t, 10*time.Second), order{ID: "o-1", Items: []string{"book"}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = got
		} else if got != first {
			t.Errorf("invocation %d: got %+v, want the stored %+v", i, got, first)
		}
	}
	if runs.Load() != 1 || len(replays) != 2 {
		t.Errorf("runs %d, replays %q: want 1 run and 2 replays", runs.Load(), replays)
	}
	if other, _ := h(invocation(t, 10*time.Second), order{ID: "o-2"}); other.Run != 2 {
		t.Errorf("another key: got %+v, want a second run", other)
	}
}

func testWrapErrors(t *testing.T, s idem.Store) {
	var runs atomic.Int64
	transient := errors.New("downstream timed out")
	h, err := idemlambda.Wrap(s, orderKey, func(ctx context.Context, o order) (receipt, error) {
		n := runs.Add(1)
		switch o.ID {
		case "flaky":
			if n == 1 {
				return receipt{}, transient
			}
		case "bad":
			return receipt{}, &idem.PermanentError{Code: "invalid-order", Err: errors.New("no items")}
		}
		return receipt{OrderID: o.ID, Run: n}, nil
	}, prefix())
	if err != nil {
		t.Fatal(err)
	}
	ctx := invocation(t, 10*time.Second)
	if _, err := h(ctx, order{ID: "flaky"}); !errors.Is(err, transient) {
		t.Fatalf("first: got %v, want the transient error", err)
	}
	if got, err := h(ctx, order{ID: "flaky"}); err != nil || got.Run != 2 {
		t.Fatalf("retry: got %+v, %v; want the second run (the error released the key)", got, err)
	}
	runs.Store(0)
	for i := range 3 {
		_, err := h(ctx, order{ID: "bad"})
		var perm *idem.PermanentError
		if !errors.As(err, &perm) || perm.Code != "invalid-order" || perm.Replayed != (i > 0) {
			t.Fatalf("invocation %d: got %v, want the permanent error (replayed %v)", i, err, i > 0)
		}
	}
	if runs.Load() != 1 {
		t.Errorf("a permanent error ran %d times, want 1", runs.Load())
	}
}

func testWrapInProgress(t *testing.T, s idem.Store) {
	f := idemtest.NewFaulty(s)
	started, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int64
	fn := func(ctx context.Context, o order) (receipt, error) {
		if runs.Add(1) == 1 {
			close(started)
			<-release
		}
		return receipt{OrderID: o.ID}, nil
	}
	p := prefix()
	h, _ := idemlambda.Wrap(f, orderKey, fn, p)
	hWait, _ := idemlambda.Wrap(f, orderKey, fn, p, idemlambda.WithWait(20*time.Second))
	done := make(chan error)
	go func() {
		_, err := h(invocation(t, 20*time.Second), order{ID: "o"})
		done <- err
	}()
	<-started
	_, err := h(invocation(t, 10*time.Second), order{ID: "o"})
	var ip *idem.InProgressError
	if !errors.As(err, &ip) {
		t.Fatalf("duplicate in flight: got %v, want *idem.InProgressError", err)
	}
	// The waiting duplicate's claim is refused while the first still
	// runs; only then does the first finish.
	refused := make(chan error, 1)
	f.On("PutIfAbsent", idemtest.Times(1, func(ctx context.Context, c idemtest.Call, send func() error) error {
		err := send()
		refused <- err
		return err
	}))
	waited := make(chan error)
	go func() {
		_, err := hWait(invocation(t, 20*time.Second), order{ID: "o"})
		waited <- err
	}()
	if err := <-refused; !errors.Is(err, idem.ErrConflict) {
		t.Errorf("waiting duplicate's claim: got %v, want ErrConflict (the key in progress)", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Errorf("waiting duplicate: %v", err)
	}
	if runs.Load() != 1 {
		t.Errorf("runs: %d, want 1", runs.Load())
	}
}

func testWrapValidation(t *testing.T, s idem.Store) {
	h, err := idemlambda.WrapValidated(s, orderKey, func(o order) (any, error) { return o.Items, nil }, func(ctx context.Context, o order) (receipt, error) {
		return receipt{OrderID: o.ID}, nil
	}, prefix())
	if err != nil {
		t.Fatal(err)
	}
	ctx := invocation(t, 10*time.Second)
	if _, err := h(ctx, order{ID: "o", Items: []string{"book"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h(ctx, order{ID: "o", Items: []string{"book"}}); err != nil {
		t.Errorf("same payload: %v", err)
	}
	if _, err := h(ctx, order{ID: "o", Items: []string{"lamp"}}); !errors.Is(err, idem.ErrMismatch) {
		t.Errorf("same key, other items: got %v, want ErrMismatch", err)
	}
}

// consumer is an SQS handler that records what it handled.
type consumer struct {
	mu      sync.Mutex
	handled []string // message bodies, in order
	fail    map[string]error
	block   map[string]chan struct{}
	started chan string
}

func (c *consumer) handle(ctx context.Context, m events.SQSMessage) error {
	if ch := c.block[m.Body]; ch != nil {
		c.started <- m.Body
		<-ch
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fail[m.Body]; err != nil {
		delete(c.fail, m.Body)
		return err
	}
	c.handled = append(c.handled, m.Body)
	return nil
}

func (c *consumer) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.handled...)
}

func batch(arn string, ids ...string) events.SQSEvent {
	var ev events.SQSEvent
	for _, id := range ids {
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: "msg-" + id, Body: id, EventSourceARN: arn})
	}
	return ev
}

const standardQueue = "arn:aws:sqs:us-east-1:123456789012:orders"

func failures(r events.SQSEventResponse) string {
	var ids []string
	for _, f := range r.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	return fmt.Sprint(ids)
}

func testSQSDeduplicates(t *testing.T, s idem.Store) {
	c := &consumer{}
	h, err := idemlambda.SQS(s, c.handle, prefix())
	if err != nil {
		t.Fatal(err)
	}
	ctx := invocation(t, 20*time.Second)
	r, _ := h(ctx, batch(standardQueue, "a", "b", "a"))
	if failures(r) != "[]" {
		t.Errorf("failures: %s, want none", failures(r))
	}
	r, _ = h(ctx, batch(standardQueue, "b", "c", "a"))
	if failures(r) != "[]" {
		t.Errorf("redelivery: failures %s, want none", failures(r))
	}
	if got := fmt.Sprint(c.got()); got != "[a b c]" {
		t.Errorf("handled %s, want [a b c]: each message once", got)
	}
}

func testSQSPartialFailures(t *testing.T, s idem.Store) {
	c := &consumer{fail: map[string]error{
		"b": errors.New("database busy"),
		"d": idem.Permanent(errors.New("malformed order")),
	}}
	h, _ := idemlambda.SQS(s, c.handle, prefix())
	ctx := invocation(t, 20*time.Second)
	r, _ := h(ctx, batch(standardQueue, "a", "b", "c", "d"))
	if got := failures(r); got != "[msg-b]" {
		t.Errorf("failures: %s, want [msg-b] (d failed permanently: not redelivered)", got)
	}
	// SQS redelivers b (and, say, a again).
	r, _ = h(ctx, batch(standardQueue, "a", "b", "d"))
	if got := failures(r); got != "[]" {
		t.Errorf("redelivery: failures %s, want none", got)
	}
	if got := fmt.Sprint(c.got()); got != "[a c b]" {
		t.Errorf("handled %s, want [a c b]", got)
	}

	// FIFO: stop at the first failure, and fail everything after it.
	c.fail["y"] = errors.New("database busy")
	r, _ = h(ctx, batch(standardQueue+".fifo", "x", "y", "z"))
	if got := failures(r); got != "[msg-y msg-z]" {
		t.Errorf("FIFO failures: %s, want [msg-y msg-z]", got)
	}
	if got := fmt.Sprint(c.got()); got != "[a c b x]" {
		t.Errorf("handled %s: z must not run after y failed on a FIFO queue", got)
	}
	// An invocation out of time fails what it has not started.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	r, _ = h(done, batch(standardQueue, "p", "q"))
	if got := failures(r); got != "[msg-p msg-q]" {
		t.Errorf("cancelled invocation: failures %s, want [msg-p msg-q]", got)
	}
}

func testSQSInProgress(t *testing.T, s idem.Store) {
	release := make(chan struct{})
	c := &consumer{block: map[string]chan struct{}{"slow": release}, started: make(chan string, 1)}
	h, _ := idemlambda.SQS(s, c.handle, prefix())
	first := make(chan events.SQSEventResponse)
	go func() {
		r, _ := h(invocation(t, 20*time.Second), batch(standardQueue, "slow"))
		first <- r
	}()
	<-c.started
	// A second consumer gets the same message (visibility timeout too
	// short): it must not handle it, and must hand it back to SQS.
	r, _ := h(invocation(t, 20*time.Second), batch(standardQueue, "slow", "other"))
	if got := failures(r); got != "[msg-slow]" {
		t.Errorf("concurrent delivery: failures %s, want [msg-slow]", got)
	}
	close(release)
	if r := <-first; failures(r) != "[]" {
		t.Errorf("first consumer: failures %s", failures(r))
	}
	if got := fmt.Sprint(c.got()); got != "[other slow]" {
		t.Errorf("handled %s, want [other slow]", got)
	}
}

func apiRequest(method, key, body string) events.APIGatewayProxyRequest {
	r := events.APIGatewayProxyRequest{HTTPMethod: method, Path: "/orders", Body: body, Headers: map[string]string{}}
	if key != "" {
		r.Headers["Idempotency-Key"] = key
	}
	return r
}

type api struct {
	runs   atomic.Int64
	status int
	gate   chan struct{}
	start  chan struct{}
}

func (a *api) handle(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	n := a.runs.Add(1)
	if a.gate != nil && n == 1 {
		close(a.start)
		<-a.gate
	}
	status := a.status
	if status == 0 {
		status = http.StatusCreated
	}
	return events.APIGatewayProxyResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/json", "Location": fmt.Sprintf("/orders/%d", n)},
		Body:       fmt.Sprintf(`{"order":%d}`, n),
	}, nil
}

func testAPIGatewayReplays(t *testing.T, s idem.Store) {
	a := &api{}
	h, err := idemlambda.APIGateway(s, a.handle, prefix())
	if err != nil {
		t.Fatal(err)
	}
	ctx := invocation(t, 20*time.Second)
	key := rand.Text()
	first, _ := h(ctx, apiRequest("POST", key, `{"sku":"book"}`))
	if first.StatusCode != http.StatusCreated || first.Headers[idemhttpReplayed] != "" {
		t.Fatalf("first: %+v", first)
	}
	again, _ := h(ctx, apiRequest("POST", `"`+key+`"`, `{"sku":"book"}`))
	if again.StatusCode != first.StatusCode || again.Body != first.Body || again.Headers["Location"] != first.Headers["Location"] || again.Headers[idemhttpReplayed] != "true" {
		t.Errorf("retry: %+v, want a replay of %+v", again, first)
	}
	if first.Headers[idemhttpReplayed] != "" {
		t.Error("marking the replay changed the first response's headers")
	}
	// Another caller with the same key is another request.
	other := apiRequest("POST", key, `{"sku":"book"}`)
	other.RequestContext.Authorizer = map[string]any{"principalId": "user-2"}
	if r, _ := h(ctx, other); r.Headers[idemhttpReplayed] != "" || r.Body == first.Body {
		t.Errorf("another caller got %+v, want its own response", r)
	}
	if a.runs.Load() != 2 {
		t.Errorf("runs: %d, want 2", a.runs.Load())
	}
}

const idemhttpReplayed = "Idempotent-Replayed"

func testAPIGatewayConflicts(t *testing.T, s idem.Store) {
	a := &api{gate: make(chan struct{}), start: make(chan struct{})}
	h, _ := idemlambda.APIGateway(s, a.handle, prefix())
	key := rand.Text()
	done := make(chan events.APIGatewayProxyResponse)
	go func() {
		r, _ := h(invocation(t, 20*time.Second), apiRequest("POST", key, "a"))
		done <- r
	}()
	<-a.start
	ctx := invocation(t, 20*time.Second)
	if r, _ := h(ctx, apiRequest("POST", key, "a")); r.StatusCode != http.StatusConflict || r.Headers["Retry-After"] == "" {
		t.Errorf("in flight: %d %v, want 409 with Retry-After", r.StatusCode, r.Headers)
	}
	if r, _ := h(ctx, apiRequest("POST", key, "b")); r.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("other body: %d, want 422", r.StatusCode)
	}
	close(a.gate)
	<-done
	if r, _ := h(ctx, apiRequest("POST", key, "b")); r.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("other body after completion: %d, want 422", r.StatusCode)
	}
	if r, _ := h(ctx, apiRequest("PATCH", key, "a")); r.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("other method: %d, want 422", r.StatusCode)
	}
	if a.runs.Load() != 1 {
		t.Errorf("runs: %d, want 1", a.runs.Load())
	}
}
