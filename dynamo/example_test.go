package dynamo_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
)

type Receipt struct {
	PaymentID string `json:"payment_id"`
	Amount    int64  `json:"amount"`
}

func charge(ctx context.Context, orderID string, amount int64) (Receipt, error) {
	return Receipt{PaymentID: "pay_" + orderID, Amount: amount}, nil
}

// Wiring a Store: the SDK's default configuration (environment, shared
// files, IAM role), an optional endpoint for a local emulator, a table, and
// idem.Do on top. This example is compiled, not run: it needs a DynamoDB.
func Example() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("eu-west-1"))
	if err != nil {
		log.Fatal(err)
	}
	client := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		// For moto, ministack or LocalStack; leave unset for AWS.
		// (AWS_ENDPOINT_URL_DYNAMODB in the environment does the same.)
		o.BaseEndpoint = aws.String("http://127.0.0.1:5000")
		// Close idle connections before the endpoint does: a request sent
		// on a connection the server is closing has an unknown outcome.
		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.IdleConnTimeout = 4 * time.Second
		})
	})

	// Once, at deploy time or in a test; production tables usually come
	// from CloudFormation or Terraform (see dynamo/README.md).
	if err := dynamo.CreateTable(ctx, client, "idem"); err != nil {
		log.Fatal(err)
	}
	store, err := dynamo.New(client, "idem")
	if err != nil {
		log.Fatal(err)
	}

	// However often the client retries order 42, it is charged once.
	receipt, err := idem.Do(ctx, store, idem.JoinKey("charge", "order-42"),
		func(ctx context.Context) (Receipt, error) { return charge(ctx, "order-42", 1250) },
		idem.WithRetention(24*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(receipt.PaymentID)
}

// The single-table layout: every item of the Store lives under one
// partition value and the idem key goes in the sort key.
func Example_singleTable() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	client := dynamodb.NewFromConfig(cfg)
	opts := []dynamo.Option{
		dynamo.WithKeyAttribute("PK"),
		dynamo.WithSortKey("SK", "IDEM#payments"),
		dynamo.WithExpiryAttribute("ttl"),
	}
	if err := dynamo.CreateTable(ctx, client, "app", opts...); err != nil {
		log.Fatal(err)
	}
	store, err := dynamo.New(client, "app", opts...)
	if err != nil {
		log.Fatal(err)
	}
	_ = store
}

// The kernel directly: a refused write carries the current item, read from
// the write's own response, so handling a conflict needs no extra request.
func ExampleStore_PutIfAbsent() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	store, err := dynamo.New(dynamodb.NewFromConfig(cfg), "idem")
	if err != nil {
		log.Fatal(err)
	}
	_, err = store.PutIfAbsent(ctx, "event/123", []byte("seen"), time.Hour)
	var conflict *idem.ConflictError
	switch {
	case err == nil:
		fmt.Println("first delivery")
	case errors.As(err, &conflict):
		fmt.Printf("duplicate, stored at version %d\n", conflict.Current.Version)
	case errors.Is(err, dynamo.ErrThrottled):
		fmt.Println("throttled: nothing written, retry later")
	case errors.Is(err, idem.ErrUnknownOutcome):
		fmt.Println("outcome unknown: safe to retry")
	default:
		log.Fatal(err)
	}
}
