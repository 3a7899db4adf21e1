package idemlambda_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemlambda"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
	"github.com/idemkit/idemkit/idem/memstore"
)

func TestMain(m *testing.M) {
	// The SQS wrapper logs every failed record; the tests provoke many.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func TestWrappers(t *testing.T) {
	runSuite(t, func(t *testing.T) idem.Store { return memstore.New() })
}

func TestWrapNoKey(t *testing.T) {
	var runs atomic.Int64
	fn := func(ctx context.Context, o order) (receipt, error) { runs.Add(1); return receipt{}, nil }
	h, _ := idemlambda.Wrap(memstore.New(), orderKey, fn)
	if _, err := h(context.Background(), order{}); !errors.Is(err, idemlambda.ErrNoKey) {
		t.Errorf("no key: got %v, want ErrNoKey", err)
	}
	h, _ = idemlambda.Wrap(memstore.New(), orderKey, fn, idemlambda.WithRequired(false))
	h(context.Background(), order{})
	h(context.Background(), order{})
	if runs.Load() != 2 {
		t.Errorf("optional key: %d runs, want 2 (unprotected)", runs.Load())
	}
	keyErr := errors.New("bad event")
	h, _ = idemlambda.Wrap(memstore.New(), func(order) (string, error) { return "", keyErr }, fn)
	if _, err := h(context.Background(), order{}); !errors.Is(err, keyErr) {
		t.Errorf("key function error: got %v", err)
	}
}

// Handlers that do nothing, one of each wrapper's kind.
func nopOrder(context.Context, order) (receipt, error) { return receipt{}, nil }
func nopSQS(context.Context, events.SQSMessage) error  { return nil }
func nopAPI(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	return events.APIGatewayProxyResponse{}, nil
}

// invalidChecker returns a function that fails t unless err, from the
// call named what, matches idem.ErrInvalid.
func invalidChecker(t *testing.T) func(what string, err error) {
	return func(what string, err error) {
		t.Helper()
		if !errors.Is(err, idem.ErrInvalid) {
			t.Errorf("%s: got %v, want an error matching idem.ErrInvalid", what, err)
		}
	}
}

// TestBadOptions: a nil store (untyped, or a nil pointer that would panic
// at the first event), a nil handler or key function, and every invalid
// option are rejected by each wrapper with an error matching
// idem.ErrInvalid.
func TestBadOptions(t *testing.T) {
	s := memstore.New()
	var nilMem *memstore.Store
	wantInvalid := invalidChecker(t)
	for name, opt := range map[string]idemlambda.Option{
		"retention":       idemlambda.WithRetention(0),
		"lease":           idemlambda.WithLease(-1),
		"lease zero":      idemlambda.WithLease(0),
		"lease too short": idemlambda.WithLease(2 * time.Nanosecond),
		"lease below min": idemlambda.WithLease(idemlambda.MinLease - 1),
		"wait":            idemlambda.WithWait(-1),
	} {
		_, err := idemlambda.Wrap(s, orderKey, nopOrder, opt)
		wantInvalid("Wrap, "+name, err)
		_, err = idemlambda.SQS(s, nopSQS, opt)
		wantInvalid("SQS, "+name, err)
		_, err = idemlambda.APIGateway(s, nopAPI, opt)
		wantInvalid("APIGateway, "+name, err)
	}
	for name, st := range map[string]idem.Store{"nil store": nil, "nil pointer store": nilMem} {
		_, err := idemlambda.Wrap(st, orderKey, nopOrder)
		wantInvalid("Wrap, "+name, err)
		_, err = idemlambda.SQS(st, nopSQS)
		wantInvalid("SQS, "+name, err)
		_, err = idemlambda.APIGateway(st, nopAPI)
		wantInvalid("APIGateway, "+name, err)
	}
	_, err := idemlambda.Wrap[order, receipt](s, nil, nopOrder)
	wantInvalid("Wrap, nil key function", err)
	_, err = idemlambda.Wrap[order, receipt](s, orderKey, nil)
	wantInvalid("Wrap, nil handler", err)
	_, err = idemlambda.SQS(s, nil)
	wantInvalid("SQS, nil handler", err)
	_, err = idemlambda.APIGateway(s, nil)
	wantInvalid("APIGateway, nil handler", err)
	if _, err := idemlambda.Wrap(s, orderKey, nopOrder, idemlambda.WithLease(idemlambda.MinLease)); err != nil {
		t.Errorf("WithLease(MinLease): %v", err)
	}
}

// TestBadFamilyOptions: every invalid option of one wrapper's own family
// is rejected with an error matching idem.ErrInvalid.
func TestBadFamilyOptions(t *testing.T) {
	s := memstore.New()
	wantInvalid := invalidChecker(t)
	_, err := idemlambda.SQS(s, nopSQS, idemlambda.WithLogger(nil))
	wantInvalid("SQS, nil logger", err)
	_, err = idemlambda.APIGateway(s, nopAPI, idemlambda.WithLogger(nil))
	wantInvalid("APIGateway, nil logger", err)
	_, err = idemlambda.SQS(s, nopSQS, idemlambda.WithMessageKey(nil))
	wantInvalid("SQS, nil message key", err)
	_, err = idemlambda.SQS(s, nopSQS, idemlambda.WithValidation[events.SQSMessage](nil))
	wantInvalid("SQS, nil validation", err)
	_, err = idemlambda.WrapValidated(s, orderKey, nil, nopOrder)
	wantInvalid("WrapValidated, nil validation", err)
	for name, opt := range map[string]idemlambda.APIGatewayOption{
		"no methods":     idemlambda.WithMethods(),
		"bad method":     idemlambda.WithMethods("PO ST"),
		"nil scope":      idemlambda.WithScope(nil),
		"nil validation": idemlambda.WithValidation[events.APIGatewayProxyRequest](nil),
	} {
		_, err = idemlambda.APIGateway(s, nopAPI, opt)
		wantInvalid("APIGateway, "+name, err)
	}
}

// TestOptionFamilies: a validation of another event type, or an option of
// another wrapper, is not an option of a wrapper (so it does not compile
// there); each wrapper's own options are.
func TestOptionFamilies(t *testing.T) {
	sqsValidation := idemlambda.WithValidation(func(m events.SQSMessage) (any, error) { return m.Body, nil })
	apiValidation := idemlambda.WithValidation(func(r events.APIGatewayProxyRequest) (any, error) { return r.Body, nil })
	orderValidation := idemlambda.WithValidation(func(o order) (any, error) { return o.Items, nil })
	tests := []struct {
		name     string
		opt      any
		sqs, api bool
	}{
		{"common", idemlambda.WithWait(0), true, true},
		{"logger", idemlambda.WithLogger(slog.Default()), true, true},
		{"message key", idemlambda.WithMessageKey(idemlambda.DeduplicationID), true, false},
		{"methods", idemlambda.WithMethods("PUT"), false, true},
		{"SQS validation", sqsValidation, true, false},
		{"API Gateway validation", apiValidation, false, true},
		{"validation of another type", orderValidation, false, false},
	}
	for _, tc := range tests {
		if _, ok := tc.opt.(idemlambda.SQSOption); ok != tc.sqs {
			t.Errorf("%s: an SQSOption: %v, want %v", tc.name, ok, tc.sqs)
		}
		if _, ok := tc.opt.(idemlambda.APIGatewayOption); ok != tc.api {
			t.Errorf("%s: an APIGatewayOption: %v, want %v", tc.name, ok, tc.api)
		}
	}
}

// storedLease reads the lease deadline of the record under key.
func storedLease(t *testing.T, s idem.Store, key string) time.Time {
	t.Helper()
	it, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	lease, _ := storedRecord(t, it.Value)
	return lease
}

// storedRecord reads the lease deadline and the fingerprint from a claim
// record's stored form (idem/internal/recordfmt has the layout).
func storedRecord(t *testing.T, value []byte) (leaseUntil time.Time, fp []byte) {
	t.Helper()
	if len(value) < 2 || value[0] != 0x01 {
		t.Fatalf("not a claim record: %q", value)
	}
	b := value[2:]
	uvarint := func() uint64 {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			t.Fatalf("a truncated claim record: %q", value)
		}
		b = b[k:]
		return v
	}
	varint := func() int64 {
		v, k := binary.Varint(b)
		if k <= 0 {
			t.Fatalf("a truncated claim record: %q", value)
		}
		b = b[k:]
		return v
	}
	readTime := func() time.Time {
		if ns := uvarint(); ns > 0 {
			return time.Unix(varint(), int64(ns-1))
		}
		return time.Time{}
	}
	uvarint()         // the header's length
	b = b[uvarint():] // the token
	leaseUntil = readTime()
	varint() // the attempt
	readTime()
	readTime() // created, completed
	fp = b[:uvarint()]
	return leaseUntil, fp
}

// TestLeaseFromDeadline: the claim's lease is the invocation's deadline and
// is not extended. On synctest's fake clock: the handler runs for 1.5s of
// a 2s invocation, past the 667ms at which a heartbeat a third of the lease
// would have extended it, and the only CompareAndSwap is the completion.
func TestLeaseFromDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idemtest.NewCounting(memstore.New())
		var lease time.Time
		h, _ := idemlambda.Wrap(s, orderKey, func(ctx context.Context, o order) (receipt, error) {
			lease = storedLease(t, s, "p/"+o.ID)
			time.Sleep(1500 * time.Millisecond)
			return receipt{}, nil
		}, idemlambda.WithKeyPrefix("p/"))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		dl, _ := ctx.Deadline()
		if _, err := h(ctx, order{ID: "o"}); err != nil {
			t.Fatal(err)
		}
		if !lease.Equal(dl) {
			t.Errorf("lease until %v, want the deadline %v", lease, dl)
		}
		if c := s.Counts(); c.CompareAndSwap != 1 {
			t.Errorf("CompareAndSwap calls %d, want 1 (the completion; no extension)", c.CompareAndSwap)
		}
	})
}

// TestWithLeaseExtended: WithLease fixes the lease, whatever the deadline,
// and extends it every third while the handler runs. On synctest's fake
// clock: a 300ms lease and a handler of 350ms make exactly 3 extensions
// (at 100ms, 200ms, 300ms), then the completion.
func TestWithLeaseExtended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idemtest.NewCounting(memstore.New())
		var lease time.Time
		h, _ := idemlambda.Wrap(s, orderKey, func(ctx context.Context, o order) (receipt, error) {
			lease = storedLease(t, s, "p/"+o.ID)
			time.Sleep(350 * time.Millisecond)
			return receipt{}, nil
		}, idemlambda.WithKeyPrefix("p/"), idemlambda.WithLease(300*time.Millisecond))
		start := time.Now()
		if _, err := h(invocation(t, 10*time.Second), order{ID: "o"}); err != nil {
			t.Fatal(err)
		}
		if d := lease.Sub(start); d != 300*time.Millisecond {
			t.Errorf("WithLease(300ms): lease %v after the start, want 300ms", d)
		}
		if c := s.Counts(); c.CompareAndSwap != 4 {
			t.Errorf("CompareAndSwap calls %d, want 3 extensions and the completion", c.CompareAndSwap)
		}
	})
}

// TestTimedOutInvocationTakenOver: an invocation dies (a timeout, a crash)
// holding its key. Its retry takes the key over as soon as the dead
// invocation's deadline has passed. On synctest's fake clock: a retry 1ns
// before the deadline finds the key in progress, one at the deadline takes
// it over (one CompareAndSwap) and completes it (another).
func TestTimedOutInvocationTakenOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idemtest.NewCounting(memstore.New())
		var runs, takeovers atomic.Int64
		h, _ := idemlambda.Wrap(s, orderKey, func(ctx context.Context, o order) (receipt, error) {
			if l, ok := idem.LeaseFrom(ctx); ok && l.Attempt() > 1 {
				takeovers.Add(1)
			}
			if runs.Add(1) == 1 {
				runtime.Goexit() // the runtime kills the invocation
			}
			return receipt{OrderID: o.ID}, nil
		})
		deadline := time.Now().Add(time.Second)
		go func() {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			defer cancel()
			h(ctx, order{ID: "o"})
		}()
		synctest.Wait()
		time.Sleep(time.Until(deadline) - time.Nanosecond)
		if _, err := h(invocation(t, 10*time.Second), order{ID: "o"}); !errors.Is(err, idem.ErrInProgress) {
			t.Fatalf("retry 1ns before the dead invocation's deadline: got %v, want ErrInProgress", err)
		}
		time.Sleep(time.Nanosecond)
		if _, err := h(invocation(t, 10*time.Second), order{ID: "o"}); err != nil {
			t.Fatalf("retry at the deadline: %v", err)
		}
		if runs.Load() != 2 || takeovers.Load() != 1 {
			t.Errorf("runs %d, takeovers %d: want 2 and 1", runs.Load(), takeovers.Load())
		}
		if c := s.Counts(); c.PutIfAbsent != 3 || c.CompareAndSwap != 2 {
			t.Errorf("store calls %+v, want 3 PutIfAbsent (one per invocation), 2 CompareAndSwap (the takeover, the completion)", c)
		}
	})
}

func TestSQSMessageKey(t *testing.T) {
	c := &consumer{}
	type payload struct {
		EventID string `json:"event_id"`
	}
	h, _ := idemlambda.SQS(memstore.New(), c.handle, idemlambda.WithMessageKey(func(m events.SQSMessage) (string, error) {
		var p payload
		if err := json.Unmarshal([]byte(m.Body), &p); err != nil {
			return "", err
		}
		return p.EventID, nil
	}))
	ev := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m1", Body: `{"event_id":"e1"}`},
		{MessageId: "m2", Body: `{"event_id":"e1"}`}, // sent twice by the producer
		{MessageId: "m3", Body: `not json`},
		{MessageId: "m4", Body: `{}`}, // no key
	}}
	r, _ := h(context.Background(), ev)
	if got := failures(r); got != "[m3 m4]" {
		t.Errorf("failures %s, want [m3 m4] (no key can be read)", got)
	}
	if got := len(c.got()); got != 1 {
		t.Errorf("handled %d messages, want 1", got)
	}
	if _, err := idemlambda.DeduplicationID(events.SQSMessage{Attributes: map[string]string{"MessageDeduplicationId": "d"}}); err != nil {
		t.Error(err)
	}
	if _, err := idemlambda.DeduplicationID(events.SQSMessage{}); err == nil {
		t.Error("DeduplicationID of a standard-queue message: no error")
	}
}

func TestSQSValidation(t *testing.T) {
	c := &consumer{}
	h, _ := idemlambda.SQS(memstore.New(), c.handle,
		idemlambda.WithMessageKey(func(m events.SQSMessage) (string, error) { return m.MessageAttributes["id"].DataType, nil }),
		idemlambda.WithValidation(func(m events.SQSMessage) (any, error) { return m.Body, nil }))
	msg := func(id, body string) events.SQSMessage {
		return events.SQSMessage{MessageId: id + body, Body: body, MessageAttributes: map[string]events.SQSMessageAttribute{"id": {DataType: id}}}
	}
	r, _ := h(context.Background(), events.SQSEvent{Records: []events.SQSMessage{msg("k", "a"), msg("k", "a"), msg("k", "b")}})
	if got := failures(r); got != "[kb]" {
		t.Errorf("failures %s, want [kb] (same key, other body)", got)
	}
}

func TestAPIGatewayPassThroughAndKeys(t *testing.T) {
	a := &api{}
	s := idemtest.NewCounting(memstore.New())
	h, _ := idemlambda.APIGateway(s, a.handle)
	ctx := context.Background()
	for _, r := range []events.APIGatewayProxyRequest{
		apiRequest("GET", "k", ""),
		apiRequest("POST", "", ""),
		apiRequest("POST", "", ""),
	} {
		if resp, _ := h(ctx, r); resp.StatusCode != http.StatusCreated {
			t.Errorf("%s without protection: %d", r.HTTPMethod, resp.StatusCode)
		}
	}
	if a.runs.Load() != 3 || s.Counts().Total() != 0 {
		t.Errorf("pass-through: %d runs, %+v store calls; want 3 runs, no calls", a.runs.Load(), s.Counts())
	}
	for _, key := range []string{" ", `"unterminated`, "a,b", string(make([]byte, 300))} {
		resp, _ := h(ctx, apiRequest("POST", key, ""))
		if resp.StatusCode != http.StatusBadRequest || resp.Headers["Content-Type"] != "application/problem+json" {
			t.Errorf("key %q: %d %v, want a 400 problem", key, resp.StatusCode, resp.Headers)
		}
	}
	two := apiRequest("POST", "", "")
	two.MultiValueHeaders = map[string][]string{"idempotency-key": {"a", "b"}}
	if resp, _ := h(ctx, two); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("two keys: %d, want 400", resp.StatusCode)
	}
	lower := apiRequest("POST", "", "x")
	lower.Headers["idempotency-key"] = "lower"
	h(ctx, lower)
	if resp, _ := h(ctx, lower); resp.Headers["Idempotent-Replayed"] != "true" {
		t.Errorf("lower-case header name: %+v, want a replay", resp)
	}

	hr, _ := idemlambda.APIGateway(memstore.New(), a.handle, idemlambda.WithRequired(true))
	resp, _ := hr(ctx, apiRequest("POST", "", ""))
	var p keyproto.Problem
	json.Unmarshal([]byte(resp.Body), &p)
	if resp.StatusCode != http.StatusBadRequest || p.Code != keyproto.CodeKeyMissing {
		t.Errorf("required key missing: %d %+v", resp.StatusCode, p)
	}
}

func TestAPIGatewayReleases(t *testing.T) {
	a := &api{status: http.StatusServiceUnavailable}
	h, _ := idemlambda.APIGateway(memstore.New(), a.handle)
	ctx := context.Background()
	if r, _ := h(ctx, apiRequest("POST", "k", "")); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("first: %d", r.StatusCode)
	}
	a.status = http.StatusCreated
	if r, _ := h(ctx, apiRequest("POST", "k", "")); r.StatusCode != http.StatusCreated || a.runs.Load() != 2 {
		t.Errorf("retry after a 503: %d after %d runs, want 201 from a second run", r.StatusCode, a.runs.Load())
	}
	failing := errors.New("handler failed")
	hErr, _ := idemlambda.APIGateway(memstore.New(), func(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
		return events.APIGatewayProxyResponse{}, failing
	})
	if _, err := hErr(ctx, apiRequest("POST", "k", "")); !errors.Is(err, failing) {
		t.Errorf("handler error: got %v", err)
	}
}

func TestAPIGatewayStoreDown(t *testing.T) {
	a := &api{}
	down := idemtest.NewFaulty(memstore.New())
	down.On("PutIfAbsent", idemtest.Fail(errors.New("connection refused")))
	h, _ := idemlambda.APIGateway(down, a.handle)
	r, err := h(context.Background(), apiRequest("POST", "k", ""))
	if err != nil || r.StatusCode != http.StatusServiceUnavailable || r.Headers["Retry-After"] == "" || a.runs.Load() != 0 {
		t.Errorf("store down: %d %v (err %v, runs %d), want 503 with Retry-After and no run", r.StatusCode, r.Headers, err, a.runs.Load())
	}
}

func TestErrorResponse(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{&idem.InProgressError{Key: "k", LeaseUntil: time.Now().Add(time.Minute)}, 409, keyproto.CodeInProgress},
		{fmt.Errorf("key k: %w", idem.ErrMismatch), 422, keyproto.CodeMismatch},
		{&keyproto.KeyError{Reason: "empty"}, 400, keyproto.CodeKeyInvalid},
		{fmt.Errorf("key k: %w", idem.ErrCorrupt), 500, keyproto.CodeCorruptRecord},
		{idemlambda.ErrNoKey, 400, keyproto.CodeKeyMissing},
	}
	for _, tc := range tests {
		r, ok := idemlambda.ErrorResponse(tc.err)
		var p keyproto.Problem
		json.Unmarshal([]byte(r.Body), &p)
		if !ok || r.StatusCode != tc.status || p.Code != tc.code || p.Status != tc.status {
			t.Errorf("ErrorResponse(%v) = %d %+v %v, want %d %s", tc.err, r.StatusCode, p, ok, tc.status, tc.code)
		}
	}
	if r, ok := idemlambda.ErrorResponseV2(fmt.Errorf("key k: %w", idem.ErrMismatch)); !ok || r.StatusCode != 422 || r.Headers["Content-Type"] != "application/problem+json" {
		t.Errorf("ErrorResponseV2: %+v %v", r, ok)
	}
	if _, ok := idemlambda.ErrorResponseV2(errors.New("other")); ok {
		t.Error("ErrorResponseV2 mapped an unrelated error")
	}
	if r, _ := idemlambda.ErrorResponse(&idem.InProgressError{}); r.Headers["Retry-After"] != "1" {
		t.Errorf("409 Retry-After: %q", r.Headers["Retry-After"])
	}
	for _, err := range []error{nil, errors.New("other")} {
		if _, ok := idemlambda.ErrorResponse(err); ok {
			t.Errorf("ErrorResponse(%v) mapped", err)
		}
	}
}
