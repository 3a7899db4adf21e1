package dynamo_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/internal/testenv"
)

// table creates a fresh table on srv with opts and deletes it when the test
// ends.
func table(t testing.TB, srv testenv.DynamoDBServer, opts ...dynamo.Option) (*dynamodb.Client, string) {
	t.Helper()
	c := srv.Client(t)
	name := testenv.UniqueName(t, "idem")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dynamo.CreateTable(ctx, c, name, opts...); err != nil {
		t.Fatalf("%s: CreateTable: %v", srv.Name, err)
	}
	testenv.DeleteTableOnCleanup(t, c, name)
	return c, name
}

// wired returns a copy of c whose HTTP requests go through a new wire.
func wired(c *dynamodb.Client, optFns ...func(*dynamodb.Options)) (*dynamodb.Client, *wire) {
	w := &wire{base: http.DefaultTransport, counts: map[string]int{}, faults: map[string][]fault{}}
	optFns = append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.HTTPClient = &http.Client{Transport: w}
	}}, optFns...)
	return dynamodb.New(c.Options(), optFns...), w
}

// fault is what the wire does to one request of an operation.
type fault struct {
	// drop: deliver the request, then drop its response and fail as a
	// reset connection, so the SDK retries.
	drop bool
	// throttle: answer with a 400 ThrottlingException without delivering.
	throttle bool
	// after runs once the dropped request has been delivered, before the
	// SDK sees the failure: another writer acting in the gap.
	after func()
	// stall: deliver the request, then hold the response until the
	// request's context is done.
	stall bool
}

// wire is an http.RoundTripper that counts DynamoDB requests by operation
// (PutItem, GetItem, ...) and injects faults on the wire.
//
// It also notices responses lost without being asked to: aws-sdk-go-v2 on
// net/http keep-alive connections now and then fails to read a response
// body ("use of closed network connection", aws/aws-sdk-go-v2#2737) and
// resends the request. Counts leave those resends out, so round-trip tests
// measure the library, not that race.
type wire struct {
	base http.RoundTripper

	mu      sync.Mutex
	counts  map[string]int
	faults  map[string][]fault
	natural []string // lost responses we did not inject
}

func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	w.mu.Lock()
	w.counts[op]++
	var f fault
	if q := w.faults[op]; len(q) > 0 {
		f, w.faults[op] = q[0], q[1:]
	}
	w.mu.Unlock()

	if f.throttle {
		if req.Body != nil {
			req.Body.Close()
		}
		body := `{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"injected: rate of requests exceeds the allowed throughput"}`
		return &http.Response{
			StatusCode: http.StatusBadRequest,
			Status:     "400 Bad Request",
			Header:     http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
			Body:       io.NopCloser(strings.NewReader(body)),
			Request:    req,
			Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}, nil
	}
	resp, err := w.base.RoundTrip(req)
	if err != nil {
		w.lost(op, err)
		return resp, err
	}
	if f.stall {
		resp.Body.Close()
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	if !f.drop {
		resp.Body = &watchedBody{ReadCloser: resp.Body, w: w, op: op}
		return resp, nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if f.after != nil {
		f.after()
	}
	return nil, errors.New("injected: connection reset by peer after the request was delivered")
}

// lost records a response lost without injection: the SDK will resend.
func (w *wire) lost(op string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counts[op]--
	w.natural = append(w.natural, op+": "+err.Error())
}

type watchedBody struct {
	io.ReadCloser
	w      *wire
	op     string
	failed bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !b.failed {
		b.failed = true
		b.w.lost(b.op, err)
	}
	return n, err
}

// inject queues faults for the next requests of op, in order.
func (w *wire) inject(op string, fs ...fault) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.faults[op] = append(w.faults[op], fs...)
}

// take returns the request counts so far, less the resends of responses
// lost without injection, and resets them.
func (w *wire) take() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.counts
	w.counts = map[string]int{}
	for op, n := range c {
		if n == 0 {
			delete(c, op)
		}
	}
	return c
}

// pending reports whether injected faults were left unused.
func (w *wire) pending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, q := range w.faults {
		if len(q) > 0 {
			return true
		}
	}
	return false
}

func ctxT(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustStore(t testing.TB, c dynamo.Client, table string, opts ...dynamo.Option) *dynamo.Store {
	t.Helper()
	s, err := dynamo.New(c, table, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
