package idemlambda_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem/idemlambda"
	"github.com/idemkit/idemkit/idem/memstore"
)

func ExampleWrap() {
	type Order struct {
		ID string `json:"id"`
	}
	store := memstore.New() // dynamo.New(...) in production
	replays := 0
	handler, err := idemlambda.Wrap(store,
		func(o Order) (string, error) { return o.ID, nil },
		func(ctx context.Context, o Order) (string, error) {
			fmt.Println("shipping", o.ID)
			return "shipment-" + o.ID, nil
		},
		idemlambda.WithKeyPrefix("orders/"),
		idemlambda.WithOnReplay(func(ctx context.Context, key string) { replays++ }))
	if err != nil {
		panic(err)
	}
	// lambda.Start(handler); here, an EventBridge rule delivers an event twice.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Println(handler(ctx, Order{ID: "o-1"}))
	fmt.Println(handler(ctx, Order{ID: "o-1"}))
	_, err = handler(ctx, Order{})
	fmt.Println(errors.Is(err, idemlambda.ErrNoKey), "replays:", replays)
	// Output:
	// shipping o-1
	// shipment-o-1 <nil>
	// shipment-o-1 <nil>
	// true replays: 1
}

func ExampleWrapValidated() {
	type Transfer struct {
		ID     string `json:"id"`
		Amount int    `json:"amount"`
	}
	store := memstore.New() // dynamo.New(...) in production
	handler, err := idemlambda.WrapValidated(store,
		func(t Transfer) (string, error) { return t.ID, nil },
		func(t Transfer) (any, error) { return t.Amount, nil },
		func(ctx context.Context, t Transfer) (string, error) {
			fmt.Println("moving", t.Amount)
			return "receipt-" + t.ID, nil
		},
		idemlambda.WithKeyPrefix("transfers/"))
	if err != nil {
		panic(err)
	}
	// lambda.Start(handler); here, Lambda retries an invocation.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Println(handler(ctx, Transfer{ID: "t-1", Amount: 100}))
	fmt.Println(handler(ctx, Transfer{ID: "t-1", Amount: 100}))
	_, err = handler(ctx, Transfer{ID: "t-1", Amount: 999})
	fmt.Println(err)
	// Output:
	// moving 100
	// receipt-t-1 <nil>
	// receipt-t-1 <nil>
	// idem: key "transfers/t-1": idem: key reused with a different request
}

func ExampleSQS() {
	store := memstore.New()
	handler, err := idemlambda.SQS(store, func(ctx context.Context, m events.SQSMessage) error {
		if m.Body == "poison" {
			return errors.New("cannot parse")
		}
		fmt.Println("handling", m.Body)
		return nil
	})
	if err != nil {
		panic(err)
	}
	batch := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "1", Body: "order 1"},
		{MessageId: "2", Body: "poison"},
		{MessageId: "1", Body: "order 1"}, // delivered twice
	}}
	resp, _ := handler(context.Background(), batch)
	fmt.Printf("%+v\n", resp.BatchItemFailures)
	// Output:
	// handling order 1
	// [{ItemIdentifier:2}]
}

func ExampleAPIGateway() {
	orders := 0
	handler, err := idemlambda.APIGateway(memstore.New(), func(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
		orders++
		return events.APIGatewayProxyResponse{StatusCode: 201, Body: fmt.Sprintf(`{"order":%d}`, orders)}, nil
	})
	if err != nil {
		panic(err)
	}
	req := events.APIGatewayProxyRequest{
		HTTPMethod: "POST", Path: "/orders", Body: `{"sku":"book"}`,
		Headers: map[string]string{"Idempotency-Key": "8e03978e-40d5-43e8-bc93-6894a57f9324"},
	}
	for range 2 {
		resp, _ := handler(context.Background(), req)
		fmt.Printf("%d %s replayed=%q\n", resp.StatusCode, resp.Body, resp.Headers["Idempotent-Replayed"])
	}
	req.Body = `{"sku":"lamp"}`
	resp, _ := handler(context.Background(), req)
	fmt.Println(resp.StatusCode, resp.Headers["Content-Type"])
	// Output:
	// 201 {"order":1} replayed=""
	// 201 {"order":1} replayed="true"
	// 422 application/problem+json
}
