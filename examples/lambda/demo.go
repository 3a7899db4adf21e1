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
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	runID := rand.Text()[:13] // keys of two runs on one server never meet
	app := &App{Store: store, Provider: newProvider(), Prefix: runID + "/", ledgerFail: map[string]int{}}
	rep := &Report{}
	logs := &logLines{}
	api, sqs, err := app.Handlers((slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{
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
	add := func(name, outcome string, failures []string) {
		rep.Scenarios = append(rep.Scenarios, Scenario{Name: name, Outcome: outcome, Failures: failures})
	}
	want := func(failures *[]string, cond bool, format string, args ...any) {
		if !cond {
			*failures = append(*failures, fmt.Sprintf(format, args...))
		}
	}
	const timeout = 10 * time.Second
	pay := func(key, customer string, amount int64) events.APIGatewayProxyRequest {
		body, _ := json.Marshal(PaymentRequest{Customer: customer, Amount: amount, Currency: "EUR"})
		return events.APIGatewayProxyRequest{
			HTTPMethod: "POST", Path: "/payments", Body: string(body),
			Headers: map[string]string{"Idempotency-Key": key, "Authorization": "Bearer token-" + customer, "Content-Type": "application/json"},
		}
	}
	charges := func() int {
		app.Provider.mu.Lock()
		defer app.Provider.mu.Unlock()
		return len(app.Provider.charges)
	}

	// API Gateway: a client creates a payment and retries.
	var first events.APIGatewayProxyResponse
	{
		var f []string
		k := rand.Text()
		first, err, _ = invoke(ctx, timeout, api, pay(k, "c-1", 1250))
		want(&f, err == nil && first.StatusCode == http.StatusCreated, "first request: %d %v", first.StatusCode, err)
		again, err, _ := invoke(ctx, timeout, api, pay(k, "c-1", 1250))
		want(&f, err == nil && again.StatusCode == first.StatusCode && again.Body == first.Body && again.Headers["Idempotent-Replayed"] == "true",
			"retry: %d %q replayed=%q, want a replay of %q", again.StatusCode, again.Body, again.Headers["Idempotent-Replayed"], first.Body)
		want(&f, charges() == 1, "%d charges, want 1", charges())
		add("API: retry after a lost response", "201, then the same 201 replayed", f)

		var g []string
		other, _, _ := invoke(ctx, timeout, api, pay(k, "c-1", 9999))
		want(&g, other.StatusCode == http.StatusUnprocessableEntity, "same key, other amount: %d, want 422", other.StatusCode)
		none := pay("", "c-1", 1250)
		delete(none.Headers, "Idempotency-Key")
		missing, _, _ := invoke(ctx, timeout, api, none)
		want(&g, missing.StatusCode == http.StatusBadRequest, "no key: %d, want 400", missing.StatusCode)
		want(&g, charges() == 1, "%d charges, want 1", charges())
		add("API: key reused, key missing", "422, 400; nothing charged", g)
	}

	// API Gateway: a duplicate arrives while the first is still charging.
	{
		var f []string
		k := rand.Text()
		app.Provider.started, app.Provider.released = make(chan struct{}), make(chan struct{})
		app.Provider.inject(pfSlow)
		firstDone := make(chan events.APIGatewayProxyResponse)
		go func() {
			r, _, _ := invoke(ctx, timeout, api, pay(k, "c-2", 500))
			firstDone <- r
		}()
		<-app.Provider.started
		dup, _, _ := invoke(ctx, timeout, api, pay(k, "c-2", 500))
		want(&f, dup.StatusCode == http.StatusConflict && dup.Headers["Retry-After"] != "", "duplicate in flight: %d %v, want 409 with Retry-After", dup.StatusCode, dup.Headers)
		close(app.Provider.released)
		r := <-firstDone
		want(&f, r.StatusCode == http.StatusCreated, "first: %d", r.StatusCode)
		after, _, _ := invoke(ctx, timeout, api, pay(k, "c-2", 500))
		want(&f, after.Body == r.Body && after.Headers["Idempotent-Replayed"] == "true", "retry after 409: %q, want the replay", after.Body)
		add("API: duplicate while in flight", "409 + Retry-After, then the replay", f)
	}

	// API Gateway: the provider is down; the 503 releases the key.
	{
		var f []string
		k := rand.Text()
		app.Provider.inject(pfDown)
		down, _, _ := invoke(ctx, timeout, api, pay(k, "c-3", 700))
		want(&f, down.StatusCode == http.StatusServiceUnavailable, "provider down: %d, want 503", down.StatusCode)
		up, _, _ := invoke(ctx, timeout, api, pay(k, "c-3", 700))
		want(&f, up.StatusCode == http.StatusCreated && up.Headers["Idempotent-Replayed"] == "", "retry: %d replayed=%q, want a fresh 201", up.StatusCode, up.Headers["Idempotent-Replayed"])
		add("API: provider outage releases the key", "503, then 201 from a second run", f)
	}

	// API Gateway: the invocation charges the card, then times out before
	// answering. A retry within the timeout gets 409; after it, the retry
	// takes the key over, and the provider's idempotency key absorbs the
	// repeated charge.
	{
		var f []string
		k := rand.Text()
		app.Provider.inject(pfCrash)
		_, _, died := invoke(ctx, cfg.Timeout, api, pay(k, "c-4", 300))
		want(&f, died, "the invocation did not die")
		early, _, _ := invoke(ctx, timeout, api, pay(k, "c-4", 300))
		want(&f, early.StatusCode == http.StatusConflict, "retry before the timeout passed: %d, want 409", early.StatusCode)
		time.Sleep(cfg.Timeout + 100*time.Millisecond)
		late, _, _ := invoke(ctx, timeout, api, pay(k, "c-4", 300))
		want(&f, late.StatusCode == http.StatusCreated, "retry after the timeout: %d %s, want 201", late.StatusCode, late.Body)
		app.Provider.mu.Lock()
		deduped := app.Provider.deduped
		app.Provider.mu.Unlock()
		want(&f, deduped == 1, "provider absorbed %d repeats, want 1", deduped)
		add("API: invocation timed out after charging", "409 until its deadline, then taken over; charged once", f)
	}

	// SQS: the sample batch holds an event sent twice by its producer and
	// a poison message; then SQS redelivers the batch.
	var batch events.SQSEvent
	if err := json.Unmarshal(sampleSQSEvent, &batch); err != nil {
		return nil, fmt.Errorf("sample SQS event: %w", err)
	}
	{
		var f []string
		resp, err, _ := invoke(ctx, timeout, sqs, batch)
		poison := batch.Records[3].MessageId
		want(&f, err == nil && len(resp.BatchItemFailures) == 1 && resp.BatchItemFailures[0].ItemIdentifier == poison,
			"failures %+v, want only the poison message", resp.BatchItemFailures)
		resp, _, _ = invoke(ctx, timeout, sqs, batch)
		want(&f, len(resp.BatchItemFailures) == 1, "redelivery: failures %+v, want only the poison message", resp.BatchItemFailures)
		pts, err := app.Points(ctx, "c-42")
		want(&f, err == nil && pts == 165, "c-42 has %d points, want 125+40 = 165", pts)
		add("SQS: duplicate event, poison, redelivery", "poison handed back; 165 points credited once", f)
	}

	// SQS: the ledger is busy for one record: only that one is handed back,
	// and its redelivery credits it.
	{
		var f []string
		msg := func(id, event string, points int64) events.SQSMessage {
			b, _ := json.Marshal(PointsEvent{EventID: event, Customer: "c-7", Points: points})
			return events.SQSMessage{MessageId: id, Body: string(b), EventSourceARN: "arn:aws:sqs:eu-west-1:123456789012:points"}
		}
		app.mu.Lock()
		app.ledgerFail["evt-7b"] = 1
		app.mu.Unlock()
		ev := events.SQSEvent{Records: []events.SQSMessage{msg("m1", "evt-7a", 10), msg("m2", "evt-7b", 20), msg("m3", "evt-7c", -5)}}
		resp, _, _ := invoke(ctx, timeout, sqs, ev)
		want(&f, len(resp.BatchItemFailures) == 1 && resp.BatchItemFailures[0].ItemIdentifier == "m2",
			"failures %+v, want [m2] (m3 failed for good: not redelivered)", resp.BatchItemFailures)
		resp, _, _ = invoke(ctx, timeout, sqs, events.SQSEvent{Records: []events.SQSMessage{msg("m2", "evt-7b", 20)}})
		want(&f, len(resp.BatchItemFailures) == 0, "redelivery of m2: failures %+v", resp.BatchItemFailures)
		pts, _ := app.Points(ctx, "c-7")
		want(&f, pts == 30, "c-7 has %d points, want 30", pts)
		add("SQS: transient failure, partial batch", "only the failed record redelivered; 30 points", f)
	}

	// The sample API Gateway event, as delivered, twice.
	{
		var f []string
		var req events.APIGatewayProxyRequest
		if err := json.Unmarshal(sampleAPIEvent, &req); err != nil {
			return nil, fmt.Errorf("sample API event: %w", err)
		}
		// Keys are per run on a shared table: prefix the sample's key.
		req.Headers["Idempotency-Key"] = `"` + runID + `-8e03978e"`
		var bodies []string
		for range 2 {
			r, err, _ := invoke(ctx, timeout, api, req)
			want(&f, err == nil && r.StatusCode == http.StatusCreated, "sample event: %d %v", r.StatusCode, err)
			bodies = append(bodies, r.Body)
		}
		want(&f, bodies[0] == bodies[1], "sample event twice: %q, want the same body", bodies)
		add("sample API Gateway event, delivered twice", "one payment: "+bodies[0], f)
	}

	// Concurrent invocations of one request, as a client retrying
	// aggressively causes: one charge, each answer a 201 or a 409.
	{
		var f []string
		k := rand.Text()
		var wg sync.WaitGroup
		codes := make([]int, 8)
		before := charges()
		for i := range codes {
			wg.Go(func() {
				r, _, _ := invoke(ctx, timeout, api, pay(k, "c-9", 100))
				codes[i] = r.StatusCode
			})
		}
		wg.Wait()
		for i, c := range codes {
			want(&f, c == http.StatusCreated || c == http.StatusConflict, "invocation %d: %d", i, c)
		}
		want(&f, charges()-before == 1, "%d charges, want 1", charges()-before)
		add("API: 8 concurrent invocations", fmt.Sprintf("statuses %v; one charge", codes), f)
	}

	app.Provider.mu.Lock()
	rep.Charges, rep.Calls, rep.Deduped = len(app.Provider.charges), app.Provider.calls, app.Provider.deduped
	app.Provider.mu.Unlock()
	for _, c := range []string{"c-42", "c-7"} {
		p, err := app.Points(ctx, c)
		if err != nil {
			return nil, err
		}
		rep.Points += p
	}
	logs.mu.Lock()
	rep.Logs = logs.lines
	logs.mu.Unlock()
	var f []string
	want(&f, rep.Charges == 6, "%d payments made, want 6 (one per key)", rep.Charges)
	want(&f, rep.Points == 195, "%d points credited, want 195", rep.Points)
	add("totals", fmt.Sprintf("%d payments, %d points", rep.Charges, rep.Points), f)
	return rep, nil
}
