package dynamo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The attacks in this file go through the wire (its counts and queued
// faults) with an attacker as the wire's base transport: the attacker reads
// every request body, delivers the request to the real server, and then
// does its blow to the answer.

// blow is what the attacker does to one request of an operation.
type blow struct {
	status   int    // deliver, then answer with this status and a DynamoDB error body of type code
	code     string // the error type for status (default InternalServerError)
	garble   bool   // deliver, then answer 200 with a body that is not JSON
	truncate bool   // deliver, then return the real response with its body cut halfway
	badCRC   bool   // deliver, then return the real response with a wrong X-Amz-Crc32
	// hold: keep the request back until its context ends (the client's
	// timeout), answer with the context's error, and deliver it later,
	// when release runs.
	hold bool
	// landLate: keep the request back until its context ends, answer with
	// the context's error, and deliver it right after, detached: a request
	// that lands after the SDK gave up on it.
	landLate bool
	delay    time.Duration // wait this long before delivering: requests of concurrent callers reorder
	before   func()        // runs before the request is delivered
	after    func()        // runs once delivered, before the SDK sees the answer
}

// spoils reports whether the blow changes the answer to a delivered request.
func (b blow) spoils() bool { return b.status != 0 || b.garble || b.truncate || b.badCRC }

type seenReq struct {
	op   string
	body []byte
}

type attacker struct {
	base http.RoundTripper

	mu     sync.Mutex
	blows  map[string][]blow
	random func() blow // when no blow is queued
	seen   []seenReq
	held   []func()
	// undelivered lists held or late requests whose delivery failed or
	// was refused.
	undelivered []string
	late        sync.WaitGroup
}

func newAttacker() *attacker {
	return &attacker{base: testenv.NewDynamoDBTransport(), blows: map[string][]blow{}}
}

// attacked returns a client through a new wire whose base is a new
// attacker.
func attacked(raw *dynamodb.Client, optFns ...func(*dynamodb.Options)) (*dynamodb.Client, *wire, *attacker) {
	c, w := wired(raw, optFns...)
	a := newAttacker()
	w.base = a
	return c, w, a
}

func (a *attacker) strike(op string, bs ...blow) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.blows[op] = append(a.blows[op], bs...)
}

// release delivers the held requests.
func (a *attacker) release() {
	a.mu.Lock()
	h := a.held
	a.held = nil
	a.mu.Unlock()
	for _, f := range h {
		f()
	}
}

func (a *attacker) requests(op string) [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out [][]byte
	for _, r := range a.seen {
		if r.op == op {
			out = append(out, r.body)
		}
	}
	return out
}

func (a *attacker) RoundTrip(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	a.mu.Lock()
	a.seen = append(a.seen, seenReq{op, body})
	var b blow
	if q := a.blows[op]; len(q) > 0 {
		b, a.blows[op] = q[0], q[1:]
	} else if a.random != nil {
		b = a.random()
	}
	a.mu.Unlock()

	send := func(ctx context.Context) (*http.Response, error) {
		r := req.Clone(ctx)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.GetBody = nil
		if ctx != req.Context() {
			//lint:ignore SA1019 http.Client's timeout still closes Cancel; a detached delivery must not see it
			r.Cancel = nil
		}
		return a.base.RoundTrip(r)
	}
	deliver := func(ctx context.Context) {
		resp, err := send(ctx)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		if err != nil {
			a.mu.Lock()
			a.undelivered = append(a.undelivered, op+": "+err.Error())
			a.mu.Unlock()
		}
	}
	if b.before != nil {
		b.before()
	}
	switch {
	case b.hold:
		<-req.Context().Done()
		a.mu.Lock()
		a.held = append(a.held, func() { deliver(context.Background()) })
		a.mu.Unlock()
		return nil, req.Context().Err()
	case b.landLate:
		<-req.Context().Done()
		a.late.Add(1)
		go func() { defer a.late.Done(); deliver(context.Background()) }()
		return nil, req.Context().Err()
	case b.delay > 0:
		select {
		case <-time.After(b.delay):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	resp, err := send(req.Context())
	if err != nil {
		return resp, err
	}
	if !b.spoils() && b.after == nil {
		return resp, nil
	}
	real, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if b.after != nil {
		b.after()
	}
	if rerr != nil {
		return nil, rerr
	}
	answer := func(status int, hdr http.Header, body io.Reader) *http.Response {
		return &http.Response{
			StatusCode: status, Status: http.StatusText(status),
			Header: hdr, Body: io.NopCloser(body), Request: req,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}
	}
	jsonHdr := func() http.Header { return http.Header{"Content-Type": {"application/x-amz-json-1.0"}} }
	switch {
	case b.status != 0:
		code := b.code
		if code == "" {
			code = "InternalServerError"
		}
		return answer(b.status, jsonHdr(), strings.NewReader(`{"__type":"com.amazonaws.dynamodb.v20120810#`+code+`","message":"injected after delivery"}`)), nil
	case b.garble:
		return answer(http.StatusOK, jsonHdr(), strings.NewReader(`{"Attributes":{"pk":{"S`)), nil
	case b.truncate:
		h := resp.Header.Clone()
		h.Del("X-Amz-Crc32")
		return answer(resp.StatusCode, h, io.MultiReader(bytes.NewReader(real[:len(real)/2]), errReader{io.ErrUnexpectedEOF})), nil
	case b.badCRC:
		h := resp.Header.Clone()
		h.Set("X-Amz-Crc32", "1")
		return answer(resp.StatusCode, h, bytes.NewReader(real)), nil
	}
	return answer(resp.StatusCode, resp.Header, bytes.NewReader(real)), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// call is one kernel write under attack, with the check of its outcome when
// the attack leaves it applied and nobody else touched the key.
type attackCall struct {
	name string
	op   string // the request the blow hits
	prep func(s *dynamo.Store, key string) int64
	call func(s *dynamo.Store, key string, v int64) (applied bool, err error)
}

func attackCalls(ctx context.Context) []attackCall {
	put := func(s *dynamo.Store, key string) int64 {
		it, err := s.PutIfAbsent(ctx, key, []byte("v1"), 0)
		if err != nil {
			panic(err)
		}
		return it.Version
	}
	none := func(*dynamo.Store, string) int64 { return 0 }
	return []attackCall{
		{"PutIfAbsent", "PutItem", none, func(s *dynamo.Store, key string, _ int64) (bool, error) {
			_, err := s.PutIfAbsent(ctx, key, []byte("mine"), 0)
			return err == nil, err
		}},
		{"CompareAndSwap", "PutItem", put, func(s *dynamo.Store, key string, v int64) (bool, error) {
			_, err := s.CompareAndSwap(ctx, key, v, []byte("mine"), 0)
			return err == nil, err
		}},
		{"Upsert", "PutItem", none, func(s *dynamo.Store, key string, _ int64) (bool, error) {
			_, applied, err := s.Upsert(ctx, key, []byte("mine"), 5, 0)
			return applied, err
		}},
		{"CompareAndDelete", "DeleteItem", put, func(s *dynamo.Store, key string, v int64) (bool, error) {
			err := s.CompareAndDelete(ctx, key, v)
			return err == nil, err
		}},
	}
}

// runBlows runs every kernel write with a blow that delivers the request
// and then spoils the answer, twice: alone (a put must succeed through its
// token, a delete must be unknown) and with another caller deleting or
// replacing the key in the gap (every write unknown). Each call sends its
// write once.
func runBlows(t *testing.T, srv testenv.DynamoDBServer, b blow, opts ...dynamo.Option) {
	raw, name := table(t, srv, opts...)
	c, w, a := attacked(raw)
	s := mustStore(t, c, name, opts...)
	plain := mustStore(t, raw, name, opts...)
	ctx := ctxT(t)
	for _, tc := range attackCalls(ctx) {
		for _, rival := range []bool{false, true} {
			sub := tc.name
			if rival {
				sub += "/rival"
			}
			t.Run(sub, func(t *testing.T) {
				key := "k/" + t.Name()
				v := tc.prep(s, key)
				bb := b
				if rival {
					bb.after = func() {
						// Replace whatever is there, then delete it: the key
						// is absent, as if our write never happened.
						if _, _, err := plain.Upsert(ctx, key, []byte("theirs"), 1<<60, 0); err != nil {
							t.Errorf("rival Upsert: %v", err)
						}
						if err := plain.CompareAndDelete(ctx, key, 1<<60); err != nil {
							t.Errorf("rival delete: %v", err)
						}
					}
				}
				w.take()
				a.strike(tc.op, bb)
				applied, err := tc.call(s, key, v)
				got := w.take()
				if got[tc.op] != 1 {
					t.Errorf("%s sent %d times, want 1 (a resend after an attempt that may have applied): %v", tc.op, got[tc.op], got)
				}
				wantUnknown := rival || tc.op == "DeleteItem"
				switch {
				case wantUnknown && !errors.Is(err, idem.ErrUnknownOutcome):
					t.Errorf("applied %v, err %v; want idem.ErrUnknownOutcome", applied, err)
				case !wantUnknown && (err != nil || !applied):
					t.Errorf("applied %v, err %v; want applied (own token found)", applied, err)
				}
				if errors.Is(err, idem.ErrConflict) {
					t.Errorf("a write that was applied reported as a conflict: %v", err)
				}
				if errors.Is(err, dynamo.ErrThrottled) || errors.Is(err, dynamo.ErrValidation) {
					t.Errorf("a write that was applied matches a sentinel that says nothing was written: %v", err)
				}
				if !rival && tc.op == "PutItem" {
					it, gerr := plain.Get(ctx, key)
					if gerr != nil || string(it.Value) != "mine" {
						t.Errorf("stored: %+v, %v; want our write", it, gerr)
					}
				}
			})
		}
	}
}

// TestAttack5xxAfterApply: the attacker delivers the write, the server
// applies it, and the attacker answers 500 InternalServerError or 503
// ServiceUnavailable, the retryable 5xx the SDK would resend; in the
// "rival" cases another caller replaces and deletes the key inside that gap
// (the blow's after hook), so that a resend's condition would hold again.
func TestAttack5xxAfterApply(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			t.Run("500", func(t *testing.T) { runBlows(t, srv, blow{status: 500}) })
			t.Run("503", func(t *testing.T) { runBlows(t, srv, blow{status: 503, code: "ServiceUnavailable"}) })
			// A 5xx whose body names a throttling error: the write may
			// have applied, so the error must not match ErrThrottled,
			// whose documentation says nothing was written.
			t.Run("500Throttling", func(t *testing.T) { runBlows(t, srv, blow{status: 500, code: "ThrottlingException"}) })
		})
	}
}

// TestAttackGarbled200: the write is delivered and applied, and the answer
// is a 200 whose body is JSON cut short, which the SDK cannot deserialize.
func TestAttackGarbled200(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) { t.Parallel(); runBlows(t, srv, blow{garble: true}) })
	}
}

// TestAttackTruncatedResponse: the write is delivered and applied, and the
// real response's body breaks halfway (io.ErrUnexpectedEOF), as when the
// connection is cut mid-response.
func TestAttackTruncatedResponse(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) { t.Parallel(); runBlows(t, srv, blow{truncate: true}) })
	}
}

// TestAttackSortKeyLayout: the 5xx and truncation attacks on the
// single-table layout (WithSortKey), with attribute names with dots.
func TestAttackSortKeyLayout(t *testing.T) {
	opts := []dynamo.Option{dynamo.WithKeyAttribute("p.k"), dynamo.WithSortKey("s.k", "tenant.1"), dynamo.WithTokenAttribute("t.o.k")}
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			t.Run("500", func(t *testing.T) { runBlows(t, srv, blow{status: 500}, opts...) })
			t.Run("truncate", func(t *testing.T) { runBlows(t, srv, blow{truncate: true}, opts...) })
		})
	}
}

// TestAttackBadChecksum: the write is applied and its real response comes
// back with a wrong X-Amz-Crc32. Whatever the SDK makes of it, the write
// was applied: it must not be reported refused, and it is sent once.
func TestAttackBadChecksum(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w, a := attacked(raw)
			s := mustStore(t, c, name)
			ctx := ctxT(t)
			for _, tc := range attackCalls(ctx) {
				t.Run(tc.name, func(t *testing.T) {
					key := "k/" + t.Name()
					v := tc.prep(s, key)
					w.take()
					a.strike(tc.op, blow{badCRC: true})
					applied, err := tc.call(s, key, v)
					if got := w.take(); got[tc.op] != 1 {
						t.Errorf("%s sent %v times, want 1", tc.op, got)
					}
					if errors.Is(err, idem.ErrConflict) || (err == nil && !applied) {
						t.Errorf("applied write reported refused: applied %v, %v", applied, err)
					}
					t.Logf("applied %v, err %v", applied, err)
				})
			}
		})
	}
}

// TestAttackSettleBeforeLanding: the client's attempt timeout
// (http.Client.Timeout, the caller's context still live) ends the write
// while the attacker holds the request back; the Store's settling read is
// answered first, and only then (the GetItem blow's after hook) does the
// held write land and apply. The read saw no token of ours, yet the write
// applied: the outcome must be unknown, never refused, never "not applied".
func TestAttackSettleBeforeLanding(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c0, w, a := attacked(raw)
			c := dynamodb.New(c0.Options(), func(o *dynamodb.Options) {
				o.HTTPClient = &http.Client{Transport: w, Timeout: 500 * time.Millisecond}
			})
			s := mustStore(t, c, name)
			plain := mustStore(t, raw, name)
			ctx := ctxT(t)
			for _, tc := range attackCalls(ctx) {
				t.Run(tc.name, func(t *testing.T) {
					key := "k/" + t.Name()
					v := tc.prep(plain, key)
					w.take()
					a.strike(tc.op, blow{hold: true})
					a.strike("GetItem", blow{after: a.release})
					applied, err := tc.call(s, key, v)
					a.release() // a DeleteItem is never settled by a read
					if got := w.take(); got[tc.op] != 1 {
						t.Errorf("%s sent %v, want once", tc.op, got)
					}
					if !errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, idem.ErrConflict) || applied {
						t.Errorf("applied %v, err %v; want idem.ErrUnknownOutcome only (the write landed after the read)", applied, err)
					}
					checkLanded(t, a, plain, ctx, tc.op, key)
				})
			}
		})
	}
}

// checkLanded checks that the held or late request landed and applied.
func checkLanded(t *testing.T, a *attacker, plain *dynamo.Store, ctx context.Context, op, key string) {
	t.Helper()
	a.mu.Lock()
	bad := a.undelivered
	a.undelivered = nil
	a.mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("the attack did not land its request: %v", bad)
	}
	it, err := plain.Get(ctx, key)
	switch {
	case op == "DeleteItem" && !errors.Is(err, idem.ErrNotFound):
		t.Errorf("after the held delete landed: %+v, %v; want ErrNotFound", it, err)
	case op == "PutItem" && (err != nil || string(it.Value) != "mine"):
		t.Errorf("after the held write landed: %+v, %v; want our write", it, err)
	}
}

// TestAttackLandsAfterDeadline: the caller's context deadline passes while
// the attacker holds the write; it lands right after, detached. The Store
// must say unknown (never plain, never a conflict) and send it once.
func TestAttackLandsAfterDeadline(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w, a := attacked(raw)
			s := mustStore(t, c, name)
			plain := mustStore(t, raw, name)
			base := ctxT(t)
			for _, tc := range attackCalls(base) {
				t.Run(tc.name, func(t *testing.T) {
					key := "k/" + t.Name()
					v := tc.prep(plain, key)
					ctx, cancel := context.WithTimeout(base, 300*time.Millisecond)
					defer cancel()
					w.take()
					a.strike(tc.op, blow{landLate: true})
					var applied bool
					var err error
					switch tc.name {
					case "PutIfAbsent":
						_, err = s.PutIfAbsent(ctx, key, []byte("mine"), 0)
					case "CompareAndSwap":
						_, err = s.CompareAndSwap(ctx, key, v, []byte("mine"), 0)
					case "Upsert":
						_, applied, err = s.Upsert(ctx, key, []byte("mine"), 5, 0)
					case "CompareAndDelete":
						err = s.CompareAndDelete(ctx, key, v)
					}
					a.late.Wait()
					checkLanded(t, a, plain, base, tc.op, key)
					if got := w.take(); got[tc.op] != 1 {
						t.Errorf("%s sent %v, want once", tc.op, got)
					}
					if !errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, idem.ErrConflict) || applied {
						t.Errorf("applied %v, err %v; want idem.ErrUnknownOutcome", applied, err)
					}
				})
			}
		})
	}
}

// TestAttackThrottleAfterLost: the first attempt's response is dropped
// after delivery (the wire's drop fault) and a throttle is queued for the
// next attempt. No next attempt may be sent: the throttle stays unused.
func TestAttackThrottleAfterLost(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw)
			s := mustStore(t, c, name)
			ctx := ctxT(t)
			w.inject("PutItem", fault{drop: true, after: func() {
				// Delete our write in the gap so that only a resend could
				// succeed.
				p := mustStore(t, raw, name)
				if it, err := p.Get(ctx, "k"); err == nil {
					p.CompareAndDelete(ctx, "k", it.Version)
				}
			}}, fault{throttle: true}, fault{})
			_, err := s.PutIfAbsent(ctx, "k", []byte("v"), 0)
			if !errors.Is(err, idem.ErrUnknownOutcome) || errors.Is(err, dynamo.ErrThrottled) {
				t.Errorf("got %v, want idem.ErrUnknownOutcome only", err)
			}
			if got := w.take(); got["PutItem"] != 1 {
				t.Errorf("requests %v: the write was resent after a lost response", got)
			}
		})
	}
}

// TestAttackSettleReadIsConsistent: a Store configured for eventually
// consistent Gets (WithConsistentRead(false)) loses a write's response; the
// settling GetItem the attacker sees must still ask for a strongly
// consistent read of the right key, on both layouts.
func TestAttackSettleReadIsConsistent(t *testing.T) {
	srv := testenv.DynamoDBServers(t)[0]
	for _, layout := range []struct {
		name string
		opts []dynamo.Option
		key  map[string]string
	}{
		{"partition", nil, map[string]string{"pk": "the key"}},
		{"sortkey", []dynamo.Option{dynamo.WithSortKey("sk", "part")}, map[string]string{"pk": "part", "sk": "the key"}},
	} {
		t.Run(layout.name, func(t *testing.T) {
			opts := append([]dynamo.Option{dynamo.WithConsistentRead(false)}, layout.opts...)
			raw, name := table(t, srv, layout.opts...)
			c, w, a := attacked(raw)
			s := mustStore(t, c, name, opts...)
			ctx := ctxT(t)
			w.inject("PutItem", fault{drop: true})
			if _, err := s.PutIfAbsent(ctx, "the key", []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
			reads := a.requests("GetItem")
			if len(reads) != 1 {
				t.Fatalf("%d GetItem requests, want 1", len(reads))
			}
			var in struct {
				ConsistentRead bool
				Key            map[string]map[string]string
			}
			if err := json.Unmarshal(reads[0], &in); err != nil {
				t.Fatal(err)
			}
			if !in.ConsistentRead {
				t.Errorf("settling read is not strongly consistent: %s", reads[0])
			}
			for k, v := range layout.key {
				if in.Key[k]["S"] != v || len(in.Key) != len(layout.key) {
					t.Errorf("settling read's key %v, want %v", in.Key, layout.key)
				}
			}
		})
	}
}

// TestAttackCancelAtTransport: the caller cancels its context just as the
// request reaches the transport (the blow's before hook), so net/http
// returns the cancellation without taking a connection. Nothing was sent:
// the call must not succeed, nor be a conflict, and the item must not
// exist. Whether the Store calls it plain or unknown is logged (unknown is
// safe; plain is what the contract asks for when nothing was sent).
func TestAttackCancelAtTransport(t *testing.T) {
	srv := testenv.DynamoDBServers(t)[0]
	raw, name := table(t, srv)
	c, w, a := attacked(raw)
	s := mustStore(t, c, name)
	plain := mustStore(t, raw, name)
	ctx, cancel := context.WithCancel(ctxT(t))
	a.strike("PutItem", blow{before: cancel})
	w.take()
	_, err := s.PutIfAbsent(ctx, "k", []byte("v"), 0)
	if err == nil || errors.Is(err, idem.ErrConflict) {
		t.Fatalf("got %v, want a failure", err)
	}
	if got := w.take(); got["PutItem"] != 1 {
		t.Errorf("requests %v", got)
	}
	if _, gerr := plain.Get(ctxT(t), "k"); !errors.Is(gerr, idem.ErrNotFound) {
		t.Errorf("the cancelled write was applied: %v", gerr)
	}
	t.Logf("unknown %v: %v", errors.Is(err, idem.ErrUnknownOutcome), err)
}

// TestAttackExpiryBoundary: with a fixed clock around one whole second S,
// an item expiring at S is live for every write and Get at S-1ns and absent
// for every one at S exactly, and a ttl that ends 1ns past a second is
// rounded up to the next.
func TestAttackExpiryBoundary(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			S := time.Now().Truncate(time.Second).Add(time.Hour) // ahead, so no server TTL sweep deletes it
			var clk atomic.Int64
			at := func(t time.Time) { clk.Store(t.UnixNano()) }
			s := mustStore(t, raw, name, dynamo.WithClock(func() time.Time { return time.Unix(0, clk.Load()) }))
			ctx := ctxT(t)
			mk := func(key string) idem.Item {
				at(S.Add(-10 * time.Second))
				it, err := s.PutIfAbsent(ctx, key, []byte("x"), 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if !it.ExpiresAt.Equal(S) {
					t.Fatalf("ExpiresAt %v, want %v", it.ExpiresAt, S)
				}
				return it
			}
			for _, tc := range []struct {
				name string
				live bool
				now  time.Time
			}{{"before", true, S.Add(-time.Nanosecond)}, {"at", false, S}, {"after", false, S.Add(999 * time.Millisecond)}} {
				t.Run(tc.name, func(t *testing.T) {
					key := "exp/" + tc.name
					mk(key + "/get")
					at(tc.now)
					_, err := s.Get(ctx, key+"/get")
					if (err == nil) != tc.live {
						t.Errorf("Get: %v, live %v", err, tc.live)
					}
					mk(key + "/put")
					at(tc.now)
					_, err = s.PutIfAbsent(ctx, key+"/put", []byte("y"), 0)
					if (err != nil) != tc.live {
						t.Errorf("PutIfAbsent: %v, live %v", err, tc.live)
					}
					mk(key + "/cas")
					at(tc.now)
					_, err = s.CompareAndSwap(ctx, key+"/cas", 1, []byte("y"), 0) // a version never used: refused either way
					var ce *idem.ConflictError
					if !errors.As(err, &ce) || ce.Exists != tc.live {
						t.Errorf("CompareAndSwap at a wrong version: %v; Exists want %v", err, tc.live)
					}
					cas := mk(key + "/cas2")
					at(tc.now)
					_, err = s.CompareAndSwap(ctx, key+"/cas2", cas.Version, []byte("y"), 0)
					if (err == nil) != tc.live {
						t.Errorf("CompareAndSwap: %v, live %v", err, tc.live)
					}
					del := mk(key + "/del")
					at(tc.now)
					err = s.CompareAndDelete(ctx, key+"/del", del.Version)
					if (err == nil) != tc.live {
						t.Errorf("CompareAndDelete: %v, live %v", err, tc.live)
					}
					mk(key + "/ups")
					at(tc.now)
					_, applied, err := s.Upsert(ctx, key+"/ups", []byte("y"), 1, 0) // below any fresh version
					if err != nil || applied == tc.live {
						t.Errorf("Upsert below: applied %v, %v; live %v", applied, err, tc.live)
					}
				})
			}
			at(S.Add(-10*time.Second + time.Nanosecond))
			it, err := s.PutIfAbsent(ctx, "roundup", []byte("x"), 10*time.Second)
			if err != nil || !it.ExpiresAt.Equal(S.Add(time.Second)) {
				t.Errorf("ttl ending 1ns past S: %v, %v; want ExpiresAt S+1s", it.ExpiresAt, err)
			}
		})
	}
}

// TestAttackLinearizableHarsh runs idemtest's history checker through a
// wire that drops 20% of responses after delivery and cuts 5% of requests
// mid-body, over an attacker that delays 30% of requests by up to 80ms
// before delivery (concurrent requests land out of order), answers 5% with
// a 500 after delivery, 3% with a garbled 200, and holds 4% until the
// operation's 400ms deadline passes and lands them right after.
func TestAttackLinearizableHarsh(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w, a := attacked(raw)
			seed := uint64(time.Now().UnixNano())
			t.Logf("wire faults: seed %d", seed)
			w.lossy = &lossy{rnd: rand.New(rand.NewPCG(seed, 0)), drop: 0.20, cut: 0.05}
			rnd := rand.New(rand.NewPCG(seed, 1))
			a.random = func() blow { // called under a.mu
				switch x := rnd.Float64(); {
				case x < 0.05:
					return blow{status: 500}
				case x < 0.08:
					return blow{garble: true}
				case x < 0.12:
					return blow{landLate: true}
				case x < 0.42:
					return blow{delay: time.Duration(rnd.Int64N(int64(80 * time.Millisecond)))}
				}
				return blow{}
			}
			idemtest.Linearizable(t, mustStore(t, c, name), idemtest.LinearConfig{Clients: 6, Keys: 3, Ops: 30, Rounds: 6, Timeout: 400 * time.Millisecond})
			a.late.Wait()
			t.Logf("requests: %v", w.take())
		})
	}
}
