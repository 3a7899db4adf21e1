package dynamo_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"syscall"
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
	w := &wire{base: testenv.NewDynamoDBTransport(), counts: map[string]int{}, faults: map[string][]fault{}}
	optFns = append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.HTTPClient = &http.Client{Transport: w}
	}}, optFns...)
	return dynamodb.New(c.Options(), optFns...), w
}

// fault is what the wire does to one request of an operation.
type fault struct {
	// drop: deliver the request, then drop its response and fail as a
	// reset connection.
	drop bool
	// cut: the connection breaks while the request is being written: its
	// headers reach the server, half of its body does, then the write fails
	// as a reset connection. The server never has the whole request.
	cut bool
	// throttle: answer with a 400 ThrottlingException without delivering.
	throttle bool
	// reply, if set, is the JSON body of a 400 answered without
	// delivering: an error DynamoDB returns when it applied nothing.
	reply string
	// after runs in the gap a fault opens: once a dropped request has been
	// delivered, or a cut one has failed, before the SDK sees the failure.
	// Another writer acts there.
	after func()
	// stall: deliver the request, then hold the response until the
	// request's context is done.
	stall bool
	// lateBodyCheck: the transport's last read of the request body (the one
	// that checks nothing follows its declared length) waits until the
	// response is being read, by which time the SDK has closed the request
	// body. The request's write error, if any, is sent on wrote.
	lateBodyCheck bool
	wrote         chan error
}

// wire is an http.RoundTripper that counts DynamoDB requests by operation
// (PutItem, GetItem, ...) and injects faults on the wire: queued faults per
// operation, or random ones (lossy).
//
// It also notices responses lost without being asked to. Counts leave
// nothing out; natural lists those losses, so that a test that counts
// requests can tell a lost response from the library's own requests.
type wire struct {
	base http.RoundTripper

	mu      sync.Mutex
	counts  map[string]int
	faults  map[string][]fault
	natural []string // lost responses we did not inject
	lossy   *lossy
}

func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	w.mu.Lock()
	w.counts[op]++
	var f fault
	if q := w.faults[op]; len(q) > 0 {
		f, w.faults[op] = q[0], q[1:]
	} else if w.lossy != nil {
		f = w.lossy.next()
	}
	w.mu.Unlock()

	if f.throttle {
		f.reply = `{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"injected: rate of requests exceeds the allowed throughput"}`
	}
	switch {
	case f.reply != "":
		if req.Body != nil {
			req.Body.Close()
		}
		body := f.reply
		return &http.Response{
			StatusCode: http.StatusBadRequest,
			Status:     "400 Bad Request",
			Header:     http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
			Body:       io.NopCloser(strings.NewReader(body)),
			Request:    req,
			Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}, nil
	case f.cut:
		return cutTransport(f.after).RoundTrip(req)
	case f.lateBodyCheck:
		return w.lateBodyCheck(req, f.wrote)
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

// lossy chooses random faults: a dropped response with probability drop,
// a request cut while being written with probability cut.
type lossy struct {
	rnd       *rand.Rand
	drop, cut float64
}

func (l *lossy) next() fault {
	switch x := l.rnd.Float64(); {
	case x < l.drop:
		return fault{drop: true}
	case x < l.drop+l.cut:
		return fault{cut: true}
	}
	return fault{}
}

// cutTransport returns a transport whose one connection breaks while the
// request is written: its first write (the request's headers) goes through,
// the next only half, then the write fails as a reset connection and the
// connection closes, after running after.
func cutTransport(after func()) *http.Transport {
	tr := testenv.NewDynamoDBTransport()
	tr.DisableKeepAlives = true
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &cutConn{Conn: c, after: after}, nil
	}
	return tr
}

type cutConn struct {
	net.Conn
	after  func()
	writes int
}

func (c *cutConn) Write(p []byte) (int, error) {
	c.writes++
	if c.writes == 1 {
		return c.Conn.Write(p)
	}
	n := 0
	if c.writes == 2 {
		n, _ = c.Conn.Write(p[:len(p)/2])
		c.Conn.Close()
		if c.after != nil {
			c.after()
		}
	}
	return n, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: syscall.ECONNRESET}
}

// lateBodyCheck forwards req so that the transport's read of its body after
// the declared length (net/http checks that nothing follows) waits until
// the response body is first read. The SDK closes the request body between
// the two: when the response arrives, before it deserializes it. This is
// the interleaving of aws/aws-sdk-go-v2#2737, which a loaded machine
// produces now and then by descheduling net/http's write loop.
func (w *wire) lateBodyCheck(req *http.Request, wrote chan<- error) (*http.Response, error) {
	gate := make(chan struct{})
	r := req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) { wrote <- info.Err },
	}))
	held := &heldBody{rc: req.Body, left: req.ContentLength, gate: gate}
	r.Body = held
	if _, ok := req.Body.(io.WriterTo); ok {
		r.Body = heldWriterTo{held}
	}
	resp, err := w.base.RoundTrip(r)
	if err != nil {
		close(gate)
		return resp, err
	}
	resp.Body = &gatedBody{ReadCloser: resp.Body, gate: gate}
	return resp, nil
}

// heldBody is a request body whose reads past its declared length wait for
// gate (or ten seconds, so that a broken test fails instead of hanging).
type heldBody struct {
	rc   io.ReadCloser
	left int64
	gate <-chan struct{}
}

func (b *heldBody) hold() {
	if b.left > 0 {
		return
	}
	select {
	case <-b.gate:
	case <-time.After(10 * time.Second):
	}
}

func (b *heldBody) Read(p []byte) (int, error) {
	b.hold()
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *heldBody) Close() error { return b.rc.Close() }

// heldWriterTo is a heldBody over a body that implements io.WriterTo, which
// net/http uses for its last read.
type heldWriterTo struct{ *heldBody }

func (b heldWriterTo) WriteTo(dst io.Writer) (int64, error) {
	b.hold()
	return b.rc.(io.WriterTo).WriteTo(dst)
}

// gatedBody opens gate at its first read.
type gatedBody struct {
	io.ReadCloser
	gate chan struct{}
	once sync.Once
}

func (b *gatedBody) Read(p []byte) (int, error) {
	b.once.Do(func() { close(b.gate) })
	return b.ReadCloser.Read(p)
}

// lost records a response lost without injection.
func (w *wire) lost(op string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
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

// take returns the request counts so far and resets them.
func (w *wire) take() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.counts
	w.counts = map[string]int{}
	return c
}

// naturalLosses returns the responses lost without injection so far.
func (w *wire) naturalLosses() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.natural)
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
