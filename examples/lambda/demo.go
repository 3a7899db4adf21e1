package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
)

// The sample events, as API Gateway and SQS deliver them.
var (
	//go:embed testdata/api-create-payment.json
	sampleAPIEvent []byte
	//go:embed testdata/sqs-points.json
	sampleSQSEvent []byte
)

// Config shapes a demo run.
type Config struct {
	// Timeout is the function timeout of the invocation that dies in the
	// timeout scenario (default 1s); its retry waits for it to pass.
	Timeout time.Duration
}

// Report is what a run did and whether it kept every promise.
type Report struct {
	Scenarios report.Scenarios
	Charges   int // payments the provider made
	Calls     int // calls the provider got
	Deduped   int // calls it absorbed by idempotency key
	Points    int64
	// Logs is what the wrappers logged (SQS records that failed).
	Logs []string
}

// logLines collects log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Scenario is one named situation and what came of it.
type Scenario = report.Scenario

// OK reports whether every scenario kept its promises.
func (r *Report) OK() bool { return r.Scenarios.OK() }

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	r.Scenarios.Print(w)
	fmt.Fprintf(w, "\npayment provider calls   %4d\n", r.Calls)
	fmt.Fprintf(w, "  charges made           %4d\n", r.Charges)
	fmt.Fprintf(w, "  absorbed by its key    %4d  (the re-run after a timed-out invocation)\n", r.Deduped)
	fmt.Fprintf(w, "loyalty points credited  %4d\n", r.Points)
	fmt.Fprintln(w, "what the wrappers logged:")
	for _, l := range r.Logs {
		fmt.Fprintf(w, "  %s\n", l)
	}
	if r.OK() {
		fmt.Fprintln(w, "\nevery payment was charged once and every event credited once")
	} else {
		fmt.Fprintln(w, "\nFAILED: see the scenarios marked FAIL above")
	}
}

// invoke calls a handler as the Lambda runtime does: with a deadline and
// the invocation's metadata in the context, on a goroutine of its own that
// a fault may end like a killed sandbox (runtime.Goexit). It reports
// whether the invocation died.
func invoke[In, Out any](ctx context.Context, timeout time.Duration, h func(context.Context, In) (Out, error), ev In) (out Out, err error, died bool) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: rand.Text()})
	done := make(chan struct{})
	died = true
	go func() {
		defer close(done)
		out, err = h(ctx, ev)
		died = false
	}()
	<-done
	return out, err, died
}

// Run plays every scenario against store.
func Run(ctx context.Context, store idem.Store, cfg Config) (*Report, error) {
	d, err := newDemo(ctx, store, cfg)
	if err != nil {
		return nil, err
	}
	d.apiRetry()
	d.apiDuplicateInFlight()
	d.apiProviderOutage()
	d.apiTimedOut()
	if err := d.sqsSampleBatch(); err != nil {
		return nil, err
	}
	d.sqsPartialBatch()
	if err := d.sampleAPIEvent(); err != nil {
		return nil, err
	}
	d.apiConcurrent()
	if err := d.totals(); err != nil {
		return nil, err
	}
	return d.rep, nil
}

// demo is what the scenes of one run share: the app, its wrapped
// handlers, what they log and the report the scenes fill.
type demo struct {
	ctx   context.Context
	cfg   Config
	runID string
	app   *App
	api   func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error)
	sqs   func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)
	rep   *Report
	logs  *logLines
}

// newDemo builds the app on store and wraps its handlers.
func newDemo(ctx context.Context, store idem.Store, cfg Config) (*demo, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	runID := rand.Text()[:13] // keys of two runs on one server never meet
	d := &demo{ctx: ctx, cfg: cfg, runID: runID, rep: &Report{}, logs: &logLines{}}
	d.app = &App{Store: store, Provider: newProvider(), Prefix: runID + "/", ledgerFail: map[string]int{}}
	var err error
	d.api, d.sqs, err = d.app.Handlers((slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))))
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (d *demo) add(name, outcome string, failures []string) {
	d.rep.Scenarios = append(d.rep.Scenarios, Scenario{Name: name, Outcome: outcome, Failures: failures})
}

// want records a broken promise in failures unless cond holds.
func want(failures *[]string, cond bool, format string, args ...any) {
	if !cond {
		*failures = append(*failures, fmt.Sprintf(format, args...))
	}
}

// timeout is the deadline of every invocation but the one that dies.
const timeout = 10 * time.Second

// pay is an API Gateway request to create a payment.
func pay(key, customer string, amount int64) events.APIGatewayProxyRequest {
	body, _ := json.Marshal(PaymentRequest{Customer: customer, Amount: amount, Currency: "EUR"})
	return events.APIGatewayProxyRequest{
		HTTPMethod: "POST", Path: "/payments", Body: string(body),
		Headers: map[string]string{"Idempotency-Key": key, "Authorization": "Bearer token-" + customer, "Content-Type": "application/json"},
	}
}

// charges is how many payments the provider made.
func (d *demo) charges() int {
	d.app.Provider.mu.Lock()
	defer d.app.Provider.mu.Unlock()
	return len(d.app.Provider.charges)
}

// API Gateway: a client creates a payment and retries.
func (d *demo) apiRetry() {
	ctx, api, charges := d.ctx, d.api, d.charges
	var f []string
	k := rand.Text()
	first, err, _ := invoke(ctx, timeout, api, pay(k, "c-1", 1250))
	want(&f, err == nil && first.StatusCode == http.StatusCreated, "first request: %d %v", first.StatusCode, err)
	again, err, _ := invoke(ctx, timeout, api, pay(k, "c-1", 1250))
	want(&f, err == nil && again.StatusCode == first.StatusCode && again.Body == first.Body && again.Headers["Idempotent-Replayed"] == "true",
		"retry: %d %q replayed=%q, want a replay of %q", again.StatusCode, again.Body, again.Headers["Idempotent-Replayed"], first.Body)
	want(&f, charges() == 1, "%d charges, want 1", charges())
	d.add("API: retry after a lost response", "201, then the same 201 replayed", f)

	var g []string
	other, _, _ := invoke(ctx, timeout, api, pay(k, "c-1", 9999))
	want(&g, other.StatusCode == http.StatusUnprocessableEntity, "same key, other amount: %d, want 422", other.StatusCode)
	none := pay("", "c-1", 1250)
	delete(none.Headers, "Idempotency-Key")
	missing, _, _ := invoke(ctx, timeout, api, none)
	want(&g, missing.StatusCode == http.StatusBadRequest, "no key: %d, want 400", missing.StatusCode)
	want(&g, charges() == 1, "%d charges, want 1", charges())
	d.add("API: key reused, key missing", "422, 400; nothing charged", g)
}

// API Gateway: a duplicate arrives while the first is still charging.
func (d *demo) apiDuplicateInFlight() {
	ctx, api, provider := d.ctx, d.api, d.app.Provider
	var f []string
	k := rand.Text()
	provider.started, provider.released = make(chan struct{}), make(chan struct{})
	provider.inject(pfSlow)
	firstDone := make(chan events.APIGatewayProxyResponse)
	go func() {
		r, _, _ := invoke(ctx, timeout, api, pay(k, "c-2", 500))
		firstDone <- r
	}()
	<-provider.started
	dup, _, _ := invoke(ctx, timeout, api, pay(k, "c-2", 500))
	want(&f, dup.StatusCode == http.StatusConflict && dup.Headers["Retry-After"] != "", "duplicate in flight: %d %v, want 409 with Retry-After", dup.StatusCode, dup.Headers)
	close(provider.released)
	r := <-firstDone
	want(&f, r.StatusCode == http.StatusCreated, "first: %d", r.StatusCode)
	after, _, _ := invoke(ctx, timeout, api, pay(k, "c-2", 500))
	want(&f, after.Body == r.Body && after.Headers["Idempotent-Replayed"] == "true", "retry after 409: %q, want the replay", after.Body)
	d.add("API: duplicate while in flight", "409 + Retry-After, then the replay", f)
}

// API Gateway: the provider is down; the 503 releases the key.
func (d *demo) apiProviderOutage() {
	var f []string
	k := rand.Text()
	d.app.Provider.inject(pfDown)
	down, _, _ := invoke(d.ctx, timeout, d.api, pay(k, "c-3", 700))
	want(&f, down.StatusCode == http.StatusServiceUnavailable, "provider down: %d, want 503", down.StatusCode)
	up, _, _ := invoke(d.ctx, timeout, d.api, pay(k, "c-3", 700))
	want(&f, up.StatusCode == http.StatusCreated && up.Headers["Idempotent-Replayed"] == "", "retry: %d replayed=%q, want a fresh 201", up.StatusCode, up.Headers["Idempotent-Replayed"])
	d.add("API: provider outage releases the key", "503, then 201 from a second run", f)
}

// API Gateway: the invocation charges the card, then times out before
// answering. A retry within the timeout gets 409; after it, the retry
// takes the key over, and the provider's idempotency key absorbs the
// repeated charge.
func (d *demo) apiTimedOut() {
	ctx, api, provider := d.ctx, d.api, d.app.Provider
	var f []string
	k := rand.Text()
	provider.inject(pfCrash)
	_, _, died := invoke(ctx, d.cfg.Timeout, api, pay(k, "c-4", 300))
	want(&f, died, "the invocation did not die")
	early, _, _ := invoke(ctx, timeout, api, pay(k, "c-4", 300))
	want(&f, early.StatusCode == http.StatusConflict, "retry before the timeout passed: %d, want 409", early.StatusCode)
	time.Sleep(d.cfg.Timeout + 100*time.Millisecond)
	late, _, _ := invoke(ctx, timeout, api, pay(k, "c-4", 300))
	want(&f, late.StatusCode == http.StatusCreated, "retry after the timeout: %d %s, want 201", late.StatusCode, late.Body)
	provider.mu.Lock()
	deduped := provider.deduped
	provider.mu.Unlock()
	want(&f, deduped == 1, "provider absorbed %d repeats, want 1", deduped)
	d.add("API: invocation timed out after charging", "409 until its deadline, then taken over; charged once", f)
}

// SQS: the sample batch holds an event sent twice by its producer and
// a poison message; then SQS redelivers the batch.
func (d *demo) sqsSampleBatch() error {
	var batch events.SQSEvent
	if err := json.Unmarshal(sampleSQSEvent, &batch); err != nil {
		return fmt.Errorf("sample SQS event: %w", err)
	}
	var f []string
	resp, err, _ := invoke(d.ctx, timeout, d.sqs, batch)
	poison := batch.Records[3].MessageId
	want(&f, err == nil && len(resp.BatchItemFailures) == 1 && resp.BatchItemFailures[0].ItemIdentifier == poison,
		"failures %+v, want only the poison message", resp.BatchItemFailures)
	resp, _, _ = invoke(d.ctx, timeout, d.sqs, batch)
	want(&f, len(resp.BatchItemFailures) == 1, "redelivery: failures %+v, want only the poison message", resp.BatchItemFailures)
	pts, err := d.app.Points(d.ctx, "c-42")
	want(&f, err == nil && pts == 165, "c-42 has %d points, want 125+40 = 165", pts)
	d.add("SQS: duplicate event, poison, redelivery", "poison handed back; 165 points credited once", f)
	return nil
}

// SQS: the ledger is busy for one record: only that one is handed back,
// and its redelivery credits it.
func (d *demo) sqsPartialBatch() {
	var f []string
	msg := func(id, event string, points int64) events.SQSMessage {
		b, _ := json.Marshal(PointsEvent{EventID: event, Customer: "c-7", Points: points})
		return events.SQSMessage{MessageId: id, Body: string(b), EventSourceARN: "arn:aws:sqs:eu-west-1:123456789012:points"}
	}
	d.app.mu.Lock()
	d.app.ledgerFail["evt-7b"] = 1
	d.app.mu.Unlock()
	ev := events.SQSEvent{Records: []events.SQSMessage{msg("m1", "evt-7a", 10), msg("m2", "evt-7b", 20), msg("m3", "evt-7c", -5)}}
	resp, _, _ := invoke(d.ctx, timeout, d.sqs, ev)
	want(&f, len(resp.BatchItemFailures) == 1 && resp.BatchItemFailures[0].ItemIdentifier == "m2",
		"failures %+v, want [m2] (m3 failed for good: not redelivered)", resp.BatchItemFailures)
	resp, _, _ = invoke(d.ctx, timeout, d.sqs, events.SQSEvent{Records: []events.SQSMessage{msg("m2", "evt-7b", 20)}})
	want(&f, len(resp.BatchItemFailures) == 0, "redelivery of m2: failures %+v", resp.BatchItemFailures)
	pts, _ := d.app.Points(d.ctx, "c-7")
	want(&f, pts == 30, "c-7 has %d points, want 30", pts)
	d.add("SQS: transient failure, partial batch", "only the failed record redelivered; 30 points", f)
}

// The sample API Gateway event, as delivered, twice.
func (d *demo) sampleAPIEvent() error {
	var f []string
	var req events.APIGatewayProxyRequest
	if err := json.Unmarshal(sampleAPIEvent, &req); err != nil {
		return fmt.Errorf("sample API event: %w", err)
	}
	// Keys are per run on a shared table: prefix the sample's key.
	req.Headers["Idempotency-Key"] = `"` + d.runID + `-8e03978e"`
	var bodies []string
	for range 2 {
		r, err, _ := invoke(d.ctx, timeout, d.api, req)
		want(&f, err == nil && r.StatusCode == http.StatusCreated, "sample event: %d %v", r.StatusCode, err)
		bodies = append(bodies, r.Body)
	}
	want(&f, bodies[0] == bodies[1], "sample event twice: %q, want the same body", bodies)
	d.add("sample API Gateway event, delivered twice", "one payment: "+bodies[0], f)
	return nil
}

// Concurrent invocations of one request, as a client retrying
// aggressively causes: one charge, each answer a 201 or a 409.
func (d *demo) apiConcurrent() {
	var f []string
	k := rand.Text()
	var wg sync.WaitGroup
	codes := make([]int, 8)
	before := d.charges()
	for i := range codes {
		wg.Go(func() {
			r, _, _ := invoke(d.ctx, timeout, d.api, pay(k, "c-9", 100))
			codes[i] = r.StatusCode
		})
	}
	wg.Wait()
	for i, c := range codes {
		want(&f, c == http.StatusCreated || c == http.StatusConflict, "invocation %d: %d", i, c)
	}
	want(&f, d.charges()-before == 1, "%d charges, want 1", d.charges()-before)
	d.add("API: 8 concurrent invocations", fmt.Sprintf("statuses %v; one charge", codes), f)
}

// totals reads what the provider charged, the points credited and what
// the wrappers logged, and checks them.
func (d *demo) totals() error {
	rep, provider := d.rep, d.app.Provider
	provider.mu.Lock()
	rep.Charges, rep.Calls, rep.Deduped = len(provider.charges), provider.calls, provider.deduped
	provider.mu.Unlock()
	for _, c := range []string{"c-42", "c-7"} {
		p, err := d.app.Points(d.ctx, c)
		if err != nil {
			return err
		}
		rep.Points += p
	}
	d.logs.mu.Lock()
	rep.Logs = d.logs.lines
	d.logs.mu.Unlock()
	var f []string
	want(&f, rep.Charges == 6, "%d payments made, want 6 (one per key)", rep.Charges)
	want(&f, rep.Points == 195, "%d points credited, want 195", rep.Points)
	d.add("totals", fmt.Sprintf("%d payments, %d points", rep.Charges, rep.Points), f)
	return nil
}
