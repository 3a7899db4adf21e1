package faultproxy_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestHTTPDynamoDB puts one item through the proxy with each fault, with
// the AWS SDK (signed requests, its own connection pool) against each
// DynamoDB server, the SDK's retries off so that each PutItem is sent
// once. Then it reads the item directly: a dropped response or a cut at
// the response must have left the item written (the request reached the
// server) although the client got an error; a cut before forwarding must
// have left nothing; a delayed response must arrive, late.
func TestHTTPDynamoDB(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			direct, table := plainTable(t, srv)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const delayBy = 300 * time.Millisecond
			proxied, p, next := putItemFaults(t, srv, delayBy)
			for _, tc := range []struct {
				fault          faultproxy.Fault
				stored, answer bool
			}{
				{faultproxy.Pass, true, true},
				{faultproxy.DropResponse, true, false},
				{faultproxy.CutAtResponse, true, false},
				{faultproxy.CutNow, false, false},
				{faultproxy.Delay, true, true},
			} {
				t.Run(tc.fault.String(), func(t *testing.T) {
					pk := tc.fault.String()
					next.Store(int64(tc.fault))
					cctx, cancel := context.WithCancel(ctx)
					defer cancel()
					if tc.fault == faultproxy.DropResponse {
						go cancelWhen(lost(p), cancel) // the client would wait for ever
					}
					begin := time.Now()
					_, err := proxied.PutItem(cctx, &dynamodb.PutItemInput{TableName: &table, Item: map[string]types.AttributeValue{
						"pk": &types.AttributeValueMemberS{Value: pk},
					}})
					if (err == nil) != tc.answer {
						t.Fatalf("PutItem: got %v, want an answer %v", err, tc.answer)
					}
					if tc.fault == faultproxy.Delay && time.Since(begin) < delayBy {
						t.Errorf("the delayed answer came after %v, want at least %v", time.Since(begin), delayBy)
					}
					if canceled := errors.Is(err, context.Canceled); canceled != (tc.fault == faultproxy.DropResponse) {
						t.Errorf("got %v: want the client to wait (until it gives up) for a dropped response only", err)
					}
					out, err := direct.GetItem(ctx, &dynamodb.GetItemInput{TableName: &table, ConsistentRead: aws.Bool(true),
						Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}}})
					if err != nil {
						t.Fatal(err)
					}
					if stored := out.Item != nil; stored != tc.stored {
						t.Errorf("item stored: %v, want %v", stored, tc.stored)
					}
				})
			}
			for _, f := range []faultproxy.Fault{faultproxy.DropResponse, faultproxy.CutAtResponse, faultproxy.CutNow, faultproxy.Delay} {
				if n := p.Stats().Applied(f); n != 1 {
					t.Errorf("%v applied %d times, want once", f, n)
				}
			}
		})
	}
}

// putItemFaults starts a proxy in front of srv that gives the fault stored
// in next to the next PutItem, and returns a client through it whose
// retries are off.
func putItemFaults(t testing.TB, srv testenv.DynamoDBServer, delayBy time.Duration) (*dynamodb.Client, *faultproxy.Proxy, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	next := new(atomic.Int64)
	p := start(t, faultproxy.Config{Target: u.Host, Protocol: faultproxy.HTTP, DelayBy: delayBy,
		Decide: func(r faultproxy.Request) faultproxy.Fault {
			if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".PutItem") {
				return faultproxy.Fault(next.Swap(int64(faultproxy.Pass)))
			}
			return faultproxy.Pass
		}})
	proxied := srv.Client(t, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String("http://" + p.Addr())
		o.Retryer = aws.NopRetryer{}
	})
	return proxied, p, next
}

// plainTable creates a table keyed by a string "pk" on srv, deleted when
// the test ends, and returns a direct client.
func plainTable(t testing.TB, srv testenv.DynamoDBServer) (*dynamodb.Client, string) {
	t.Helper()
	c := srv.Client(t)
	table := testenv.UniqueName(t, "fp")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            &table,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTableOnCleanup(t, c, table)
	return c, table
}
