package dynamo_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The benchmarks put idemkit beside the same work hand-written with the raw
// SDK, the way a careful service would write it: same requests, same
// conditions, same JSON result. Each iteration runs both, alternating which
// goes first, against the same emulator and table, so drift in the emulator
// (tables growing, other load) hits both alike; each benchmark reports
// idemkit-ns/op, sdk-ns/op and their ratio idemkit/sdk. Against an emulator
// on loopback most of the time is the emulator's; the ratio is the number to
// read, not the absolute time.
//
//	eval "$(testenv/env.sh)"
//	go test ./dynamo -run '^$' -bench . -benchtime 2000x -count 3

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

// pair runs the idemkit and the hand-written version of the same work
// alternately, one call each per iteration (swapping which goes first), and
// reports each one's time per operation and their ratio. The ns/op Go prints
// is the sum of both.
func pair(b *testing.B, lib, raw func(i int) error) {
	b.Helper()
	var libT, rawT time.Duration
	run := func(f func(int) error, i int, total *time.Duration) {
		t0 := time.Now()
		if err := f(i); err != nil {
			b.Fatal(err)
		}
		*total += time.Since(t0)
	}
	n := 0
	for b.Loop() {
		if n%2 == 0 {
			run(lib, n, &libT)
			run(raw, n, &rawT)
		} else {
			run(raw, n, &rawT)
			run(lib, n, &libT)
		}
		n++
	}
	b.ReportMetric(float64(libT.Nanoseconds())/float64(n), "idemkit-ns/op")
	b.ReportMetric(float64(rawT.Nanoseconds())/float64(n), "sdk-ns/op")
	b.ReportMetric(float64(libT)/float64(rawT), "idemkit/sdk")
}

func BenchmarkDoFirst(b *testing.B) {
	for _, srv := range testenv.DynamoDBServers(b) {
		b.Run(srv.Name, func(b *testing.B) {
			c, name := table(b, srv)
			s := mustStore(b, c, name)
			ctx := context.Background()
			pair(b, func(i int) error {
				_, err := idem.Do(ctx, s, fmt.Sprintf("idemkit/%d", i), benchFn, idem.WithRetention(24*time.Hour))
				return err
			}, func(i int) error {
				_, err := rawDo(ctx, c, name, fmt.Sprintf("sdk/%d", i))
				return err
			})
		})
	}
}

func BenchmarkDoReplay(b *testing.B) {
	for _, srv := range testenv.DynamoDBServers(b) {
		b.Run(srv.Name, func(b *testing.B) {
			c, name := table(b, srv)
			s := mustStore(b, c, name)
			ctx := context.Background()
			if _, err := idem.Do(ctx, s, "idemkit", benchFn, idem.WithRetention(24*time.Hour)); err != nil {
				b.Fatal(err)
			}
			if _, err := rawDo(ctx, c, name, "sdk"); err != nil {
				b.Fatal(err)
			}
			pair(b, func(int) error {
				v, err := idem.Do(ctx, s, "idemkit", benchFn, idem.WithRetention(24*time.Hour))
				if err == nil && v.Amount != 1250 {
					err = errors.New("wrong replayed result")
				}
				return err
			}, func(int) error {
				v, err := rawDo(ctx, c, name, "sdk")
				if err == nil && v.Amount != 1250 {
					err = errors.New("wrong replayed result")
				}
				return err
			})
		})
	}
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
			pair(b, func(int) error {
				it, err = s.CompareAndSwap(ctx, "idemkit", it.Version, value, 0)
				return err
			}, func(int) error {
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
		})
	}
}
