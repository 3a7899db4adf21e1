package dynamo_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idemkit/internal/benchtest"

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
// same emulator and table, in alternating blocks (see benchtest.SideBySide), so drift
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
	compare(b, nil, func(s *dynamo.Store) benchtest.Op {
		return func(ctx context.Context, _ int64) error {
			_, err := idem.Do(ctx, s, fmt.Sprint("idemkit/", seq.Add(1)), benchFn, idem.WithRetention(24*time.Hour))
			return err
		}
	}, func(c *dynamodb.Client, table string) benchtest.Op {
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
	compare(b, setup, func(s *dynamo.Store) benchtest.Op {
		return func(ctx context.Context, i int64) error {
			v, err := idem.Do(ctx, s, fmt.Sprint("idemkit/", i%replayKeys), benchFn, idem.WithRetention(24*time.Hour))
			if err == nil && v.Amount != 1250 {
				err = errors.New("wrong replayed result")
			}
			return err
		}
	}, func(c *dynamodb.Client, table string) benchtest.Op {
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
// counted; see benchtest.SideBySide.
func compare(b *testing.B, setup func(*testing.B, *dynamo.Store, *dynamodb.Client, string), lib func(*dynamo.Store) benchtest.Op, hand func(*dynamodb.Client, string) benchtest.Op) {
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
					libT, handT := benchtest.SideBySide(b, callers, tr.n.Load, lib(s), hand(c, name))
					libT.Report(b, float64(libT.Requests)/float64(libT.Calls), float64(handT.Requests)/float64(handT.Calls), handT)
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
			libT, handT := benchtest.SideBySide(b, 1, nil, func(context.Context, int64) error {
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
			libT.Report(b, 1, 1, handT)
		})
	}
}
