package dynamo_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The benchmarks put idemkit beside the same work hand-written with the raw
// SDK, the way a careful service would write it: same requests, same
// conditions, same JSON result. Both run through one client against the
// same emulator and table, in alternating blocks (see sideBySide), so drift
// in the emulator (tables growing, other load) hits both alike; each
// benchmark reports both sides' wall and client CPU time, allocations and
// requests per call, and the ratios idemkit/hand-written (wall-x, cpu-x,
// req-x). Against an emulator on loopback most of the time is the
// emulator's; the ratios are the numbers to read, not the absolute times.
//
//	eval "$(testenv/env.sh)"
//	go test ./dynamo -run '^$' -bench . -benchtime 400x

type benchResult struct {
	PaymentID string `json:"payment_id"`
	Amount    int64  `json:"amount"`
}

func benchFn(context.Context) (benchResult, error) {
	return benchResult{PaymentID: "pay_0123456789", Amount: 1250}, nil
}

// rawClaim is the hand-written claim: a conditional PutItem of an
// in-progress record, returning the current item when refused.
func rawClaim(ctx context.Context, c *dynamodb.Client, table, key, token string) (*dynamodb.PutItemOutput, error) {
	now := time.Now()
	return c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item: map[string]types.AttributeValue{
			"pk":     &types.AttributeValueMemberS{Value: key},
			"status": &types.AttributeValueMemberS{Value: "in_progress"},
			"token":  &types.AttributeValueMemberS{Value: token},
			"lease":  &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Add(time.Minute).UnixMilli(), 10)},
			"exp":    &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Add(24*time.Hour).Unix(), 10)},
		},
		ConditionExpression:                 aws.String("attribute_not_exists(pk) OR #exp <= :now"),
		ExpressionAttributeNames:            map[string]string{"#exp": "exp"},
		ExpressionAttributeValues:           map[string]types.AttributeValue{":now": &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)}},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
}

// rawComplete stores the result, fenced on the claim's token. A refusal
// that shows our own completion is a resend after a lost response.
func rawComplete(ctx context.Context, c *dynamodb.Client, table, key, token string, result []byte) error {
	_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(table),
		Key:                 map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: key}},
		UpdateExpression:    aws.String("SET #status = :done, #result = :r"),
		ConditionExpression: aws.String("#token = :t AND #status = :ip"),
		ExpressionAttributeNames: map[string]string{
			"#status": "status", "#result": "result", "#token": "token",
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":done": &types.AttributeValueMemberS{Value: "completed"},
			":ip":   &types.AttributeValueMemberS{Value: "in_progress"},
			":r":    &types.AttributeValueMemberB{Value: result},
			":t":    &types.AttributeValueMemberS{Value: token},
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) && attrS(ccf.Item, "token") == token && attrS(ccf.Item, "status") == "completed" {
		return nil
	}
	return err
}

func attrS(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// rawDo is Do hand-written with the same care: claim, run, complete; a
// refused claim replays the stored result, or is our own claim resent after
// a lost response.
func rawDo(ctx context.Context, c *dynamodb.Client, table, key string) (benchResult, error) {
	var v benchResult
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	_, err := rawClaim(ctx, c, table, key, token)
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf) && attrS(ccf.Item, "token") == token:
		// Our own claim.
	case errors.As(err, &ccf):
		res, _ := ccf.Item["result"].(*types.AttributeValueMemberB)
		if attrS(ccf.Item, "status") != "completed" || res == nil {
			return v, errors.New("in progress")
		}
		return v, json.Unmarshal(res.Value, &v)
	case err != nil:
		return v, err
	}
	v, _ = benchFn(ctx)
	data, err := json.Marshal(v)
	if err != nil {
		return v, err
	}
	return v, rawComplete(ctx, c, table, key, token, data)
}

// replayKeys is how many keys the replay benchmarks spread their calls over.
const replayKeys = 64

// seq makes keys unique across the repeated runs of a benchmark function.
var seq atomic.Int64

// BenchmarkDoFirst is a first execution (claim and complete: 2 writes)
// beside rawDo doing the same, at 1 and 16 callers, on every server.
func BenchmarkDoFirst(b *testing.B) {
	compare(b, nil, func(s *dynamo.Store) op {
		return func(ctx context.Context, _ int64) error {
			_, err := idem.Do(ctx, s, fmt.Sprint("idemkit/", seq.Add(1)), benchFn, idem.WithRetention(24*time.Hour))
			return err
		}
	}, func(c *dynamodb.Client, table string) op {
		return func(ctx context.Context, _ int64) error {
			_, err := rawDo(ctx, c, table, fmt.Sprint("sdk/", seq.Add(1)))
			return err
		}
	})
}

// BenchmarkDoReplay is a duplicate (1 refused write returning the stored
// record) beside rawDo's refused claim, at 1 and 16 callers.
func BenchmarkDoReplay(b *testing.B) {
	setup := func(b *testing.B, s *dynamo.Store, c *dynamodb.Client, table string) {
		ctx := context.Background()
		for i := range replayKeys {
			if _, err := idem.Do(ctx, s, fmt.Sprint("idemkit/", i), benchFn, idem.WithRetention(24*time.Hour)); err != nil {
				b.Fatal(err)
			}
			if _, err := rawDo(ctx, c, table, fmt.Sprint("sdk/", i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	compare(b, setup, func(s *dynamo.Store) op {
		return func(ctx context.Context, i int64) error {
			v, err := idem.Do(ctx, s, fmt.Sprint("idemkit/", i%replayKeys), benchFn, idem.WithRetention(24*time.Hour))
			if err == nil && v.Amount != 1250 {
				err = errors.New("wrong replayed result")
			}
			return err
		}
	}, func(c *dynamodb.Client, table string) op {
		return func(ctx context.Context, i int64) error {
			v, err := rawDo(ctx, c, table, fmt.Sprint("sdk/", i%replayKeys))
			if err == nil && v.Amount != 1250 {
				err = errors.New("wrong replayed result")
			}
			return err
		}
	})
}

// compare runs idemkit (lib) and the hand-written code (hand) on every
// server at 1 and 16 callers, through one client whose HTTP requests are
// counted; see sideBySide.
func compare(b *testing.B, setup func(*testing.B, *dynamo.Store, *dynamodb.Client, string), lib func(*dynamo.Store) op, hand func(*dynamodb.Client, string) op) {
	for _, srv := range testenv.DynamoDBServers(b) {
		b.Run(srv.Name, func(b *testing.B) {
			base, name := table(b, srv)
			tr := &countingTransport{base: testenv.NewDynamoDBTransport()}
			tr.base.MaxIdleConnsPerHost = 32 // 16 callers without reconnecting
			c := dynamodb.New(base.Options(), func(o *dynamodb.Options) { o.HTTPClient = &http.Client{Transport: tr} })
			s := mustStore(b, c, name)
			if setup != nil {
				setup(b, s, c, name)
			}
			for _, callers := range []int{1, 16} {
				b.Run(fmt.Sprint("callers=", callers), func(b *testing.B) {
					libT, handT := sideBySide(b, callers, tr.n.Load, lib(s), hand(c, name))
					libT.report(b, float64(libT.requests)/float64(libT.calls), float64(handT.requests)/float64(handT.calls), handT)
				})
			}
		})
	}
}

// countingTransport counts the HTTP requests it forwards.
type countingTransport struct {
	base *http.Transport
	n    atomic.Int64
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.base.RoundTrip(r)
}

func BenchmarkCompareAndSwap(b *testing.B) {
	value := []byte(`{"balance":1250,"currency":"EUR"}`)
	for _, srv := range testenv.DynamoDBServers(b) {
		b.Run(srv.Name, func(b *testing.B) {
			c, name := table(b, srv)
			s := mustStore(b, c, name)
			ctx := context.Background()
			it, err := s.PutIfAbsent(ctx, "idemkit", value, 0)
			if err != nil {
				b.Fatal(err)
			}
			key := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "sdk"}}
			ver := int64(0)
			libT, handT := sideBySide(b, 1, nil, func(context.Context, int64) error {
				it, err = s.CompareAndSwap(ctx, "idemkit", it.Version, value, 0)
				return err
			}, func(context.Context, int64) error {
				// The same optimistic-locking write, hand-written.
				_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
					TableName:                           aws.String(name),
					Key:                                 key,
					UpdateExpression:                    aws.String("SET #val = :val, #ver = :next"),
					ConditionExpression:                 aws.String("attribute_not_exists(#ver) OR #ver = :cur"),
					ExpressionAttributeNames:            map[string]string{"#val": "val", "#ver": "ver"},
					ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
					ExpressionAttributeValues: map[string]types.AttributeValue{
						":val":  &types.AttributeValueMemberB{Value: value},
						":cur":  &types.AttributeValueMemberN{Value: strconv.FormatInt(ver, 10)},
						":next": &types.AttributeValueMemberN{Value: strconv.FormatInt(ver+1, 10)},
					},
				})
				var ccf *types.ConditionalCheckFailedException
				if errors.As(err, &ccf) {
					// A resend after a lost response: ours if the stored
					// version is the one we wrote (a careful caller would
					// also compare a token; see dynamo's write token).
					if v, ok := ccf.Item["ver"].(*types.AttributeValueMemberN); ok && v.Value == strconv.FormatInt(ver+1, 10) {
						err = nil
					}
				}
				if err == nil {
					ver++
				}
				return err
			})
			libT.report(b, 1, 1, handT)
		})
	}
}

// The side-by-side harness. The same code is in the cassandra and dynamo
// benchmarks (each package's tests are their own).

// op is one call of a benchmarked operation; i numbers the calls of a side.
type op func(ctx context.Context, i int64) error

// block is the calls per side in one block: sideBySide alternates blocks
// of idemkit and of the hand-written code, so that drift on the shared
// machine (the server's load, other processes) hits both alike.
const block = 40

// tally is what one side used over its blocks.
type tally struct {
	calls    int64
	requests int64 // counted by sideBySide's count, if any
	wall     time.Duration
	cpu      time.Duration // user+system of the whole process (client only: the server is another)
	allocs   uint64
}

// sideBySide runs lib and hand alternately in blocks until each has made
// at least b.N calls, each block spread over callers goroutines (at 16
// callers a block is 10 calls per caller). count, if not nil, returns the
// requests sent so far. Go's own ns/op is the sum of both sides; read the
// metrics report adds.
func sideBySide(b *testing.B, callers int, count func() int64, lib, hand op) (libT, handT tally) {
	b.Helper()
	per := max(block/callers, 10)
	var libN, handN atomic.Int64
	for i := 0; libT.calls < int64(b.N) || handT.calls < int64(b.N); i++ {
		if i%2 == 0 {
			libT.run(b, callers, per, count, &libN, lib)
			handT.run(b, callers, per, count, &handN, hand)
		} else {
			handT.run(b, callers, per, count, &handN, hand)
			libT.run(b, callers, per, count, &libN, lib)
		}
	}
	return libT, handT
}

func (t *tally) run(b *testing.B, callers, per int, count func() int64, next *atomic.Int64, f op) {
	ctx := context.Background()
	errs := make(chan error, callers)
	var r0 int64
	if count != nil {
		r0 = count()
	}
	a0, c0, t0 := allocs(), cpuTime(), time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range per {
				if err := f(ctx, next.Add(1)-1); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	t.wall += time.Since(t0)
	t.cpu += cpuTime() - c0
	t.allocs += allocs() - a0
	t.calls += int64(callers * per)
	if count != nil {
		t.requests += count() - r0
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// report adds per call: idemkit's wall and CPU time, allocations and
// requests (ns/op, cpu-ns/op, allocs, req/op), the same for the
// hand-written code (hand-...), and the ratios idemkit/hand (wall-x,
// cpu-x, req-x).
func (t tally) report(b *testing.B, libReq, handReq float64, hand tally) {
	per := func(x float64, n int64) float64 { return x / float64(n) }
	b.ReportMetric(per(float64(t.wall), t.calls), "wall-ns/op")
	b.ReportMetric(per(float64(hand.wall), hand.calls), "hand-wall-ns/op")
	b.ReportMetric(per(float64(t.cpu), t.calls), "cpu-ns/op")
	b.ReportMetric(per(float64(hand.cpu), hand.calls), "hand-cpu-ns/op")
	b.ReportMetric(per(float64(t.allocs), t.calls), "lib-allocs/op")
	b.ReportMetric(per(float64(hand.allocs), hand.calls), "hand-allocs/op")
	b.ReportMetric(libReq, "req/op")
	b.ReportMetric(handReq, "hand-req/op")
	b.ReportMetric(per(float64(t.wall), t.calls)/per(float64(hand.wall), hand.calls), "wall-x")
	b.ReportMetric(per(float64(t.cpu), t.calls)/per(float64(hand.cpu), hand.calls), "cpu-x")
	b.ReportMetric(libReq/handReq, "req-x")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}

// allocs is the number of heap objects the process has allocated.
func allocs() uint64 {
	s := make([]metrics.Sample, 1)
	copy(s, allocSample)
	metrics.Read(s)
	return s[0].Value.Uint64()
}
