package dynamo_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestLinearizableTCP runs idemtest's history checker on each server with
// the faults on TCP, not in the client: every request (reads too) goes
// through a faultproxy that forwards it and drops the response 5% of the
// time (the transport's response timeout fires), forwards it and closes
// the connection when the response comes 2% of the time, and closes the
// connection without forwarding it 2% of the time. The SDK's retryer is
// the one the servers' clients use (3 attempts): it would resend a timed
// out or cut write, and only the Store's attempts middleware stops it.
// Random concurrent kernel operations must form a linearizable history,
// an unknown outcome counting as "may or may not have happened"; and, read
// at the proxy from the SDK's invocation id, no write attempt that reached
// the server with its answer lost is ever followed by another attempt of
// the same call.
func TestLinearizableTCP(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			u, err := url.Parse(srv.Endpoint)
			if err != nil {
				t.Fatal(err)
			}
			var calls resends
			p, err := faultproxy.Start(faultproxy.Config{
				Target: u.Host, Protocol: faultproxy.HTTP,
				Drop: 0.05, CutAtResponse: 0.02, CutNow: 0.02,
				Trace: calls.note,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			p.SetFaults(false)
			t.Logf("proxy seed %d", p.Seed())
			tr := testenv.NewDynamoDBTransport()
			tr.ResponseHeaderTimeout = 1500 * time.Millisecond // a dropped response is answered by nothing
			c := dynamodb.New(raw.Options(), func(o *dynamodb.Options) {
				o.BaseEndpoint = aws.String("http://" + p.Addr())
				o.HTTPClient = &http.Client{Transport: tr}
			})
			s := mustStore(t, c, name)
			p.SetFaults(true)
			begin := time.Now()
			idemtest.Linearizable(t, s, idemtest.LinearConfig{Clients: 6, Keys: 3, Ops: 30, Rounds: 4})
			st := p.Stats()
			t.Logf("%v: %d requests; dropped %d responses, cut %d connections at the response and %d before forwarding",
				time.Since(begin).Round(time.Millisecond), st.Requests, st.Dropped, st.CutAtResponse, st.CutNow)
			if st.Dropped == 0 || st.CutAtResponse == 0 || st.CutNow == 0 {
				t.Errorf("stats %+v: a fault never happened; the test did not test what it says", st)
			}
			for _, r := range calls.found() {
				t.Errorf("resent after its answer was lost: %s", r)
			}
		})
	}
}

// resends watches the requests at the proxy for a write call (one SDK
// invocation id) attempted again after an attempt the server received
// whose answer the proxy threw away or cut.
type resends struct {
	mu    sync.Mutex
	lost  map[string]string // invocation id: the lost attempt
	again []string
}

func (r *resends) note(req faultproxy.Request, f faultproxy.Fault) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	switch op {
	case "GetItem", "DescribeTable", "Query", "Scan", "BatchGetItem":
		return // reads: a retry is harmless
	}
	id := req.Header.Get("Amz-Sdk-Invocation-Id")
	attempt := op + " " + id + " " + req.Header.Get("Amz-Sdk-Request")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost == nil {
		r.lost = map[string]string{}
	}
	if first, ok := r.lost[id]; ok {
		r.again = append(r.again, attempt+" after "+first)
	}
	if f == faultproxy.DropResponse || f == faultproxy.CutAtResponse {
		r.lost[id] = attempt + " (" + f.String() + ")"
	}
}

func (r *resends) found() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.again...)
}

// TestResendsSeen checks the check of TestLinearizableTCP: a bare SDK
// client (no Store, so no attempts middleware) whose first PutItem attempt
// is forwarded and its response dropped does send the call again, and
// resends reports it.
func TestResendsSeen(t *testing.T) {
	srv := testenv.DynamoDBServers(t)[0]
	raw, name := table(t, srv)
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var calls resends
	var dropped atomic.Bool
	p, err := faultproxy.Start(faultproxy.Config{
		Target: u.Host, Protocol: faultproxy.HTTP, Trace: calls.note,
		Decide: func(r faultproxy.Request) faultproxy.Fault {
			if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".PutItem") && dropped.CompareAndSwap(false, true) {
				return faultproxy.DropResponse
			}
			return faultproxy.Pass
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	tr := testenv.NewDynamoDBTransport()
	tr.ResponseHeaderTimeout = 1500 * time.Millisecond
	c := dynamodb.New(raw.Options(), func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String("http://" + p.Addr())
		o.HTTPClient = &http.Client{Transport: tr}
	})
	_, err = c.PutItem(ctxT(t), &dynamodb.PutItemInput{TableName: &name, Item: map[string]types.AttributeValue{
		dynamo.DefaultKeyAttribute: &types.AttributeValueMemberS{Value: "k"},
	}})
	t.Logf("PutItem: %v", err)
	if p.Stats().Dropped != 1 {
		t.Fatalf("stats %+v: want one response dropped", p.Stats())
	}
	if got := calls.found(); len(got) == 0 {
		t.Error("the SDK's resend of the call whose response was dropped went unnoticed")
	} else {
		t.Logf("seen: %v", got)
	}
}
