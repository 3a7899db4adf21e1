// Command lambda is two AWS Lambda handlers made safe to invoke twice with
// idemlambda: an API Gateway handler that creates payments (Idempotency-Key
// header: replay, 409, 422) and an SQS consumer that credits loyalty points
// (de-duplicated by event ID, partial batch failures).
//
// Locally it feeds them sample events, with retries, duplicates, a timed-out
// invocation and a poison message, checks that every payment was charged
// once and every event credited once, and exits 1 if not:
//
//	go run ./examples/lambda                  # on the embedded store
//	go run ./examples/lambda -store=dynamodb  # or cassandra; see examples/internal/backend
//
// Or it invokes one handler with an event file, as often as -repeat says:
//
//	go run ./examples/lambda -handler=api -event=examples/lambda/testdata/api-create-payment.json -repeat=2
//	go run ./examples/lambda -handler=sqs -event=examples/lambda/testdata/sqs-points.json
//
// Deployed to Lambda (provided.al2023 runtime, AWS_LAMBDA_RUNTIME_API set),
// it serves the handler named by IDEM_HANDLER (api or sqs), with its keys
// in the DynamoDB table IDEM_TABLE (see dynamo.CreateTable for the schema).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/examples/internal/backend"
	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
)

func main() {
	if os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		serveLambda()
		return
	}
	kind := backend.Flag()
	handler := flag.String("handler", "", "invoke one handler (api or sqs) with -event instead of running the demo")
	event := flag.String("event", "", "the event file for -handler")
	repeat := flag.Int("repeat", 1, "how many times -handler is invoked with the event")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, closeStore := backend.MustOpen(ctx, "lambda", *kind)
	defer closeStore()

	if *handler != "" {
		if err := invokeFile(ctx, store, *handler, *event, *repeat); err != nil {
			fmt.Fprintln(os.Stderr, "lambda:", err)
			os.Exit(1)
		}
		return
	}

	fmt.Printf("idemkit Lambda demo on the %s store\n\n", *kind)
	rep, err := Run(ctx, store, Config{})
	report.Finish("lambda", rep, err)
}

// invokeFile invokes one handler with the event in path, n times, and
// prints each response.
func invokeFile(ctx context.Context, store idem.Store, handler, path string, n int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	app := &App{Store: store, Provider: newProvider(), ledgerFail: map[string]int{}}
	api, sqs, err := app.Handlers(slog.Default())
	if err != nil {
		return err
	}
	for range n {
		var out any
		switch handler {
		case "api":
			var req events.APIGatewayProxyRequest
			if err := json.Unmarshal(data, &req); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			out, err, _ = invoke(ctx, 30*time.Second, api, req)
		case "sqs":
			var ev events.SQSEvent
			if err := json.Unmarshal(data, &ev); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			out, err, _ = invoke(ctx, 30*time.Second, sqs, ev)
		default:
			return fmt.Errorf("unknown handler %q (want api or sqs)", handler)
		}
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Println(string(b))
	}
	return nil
}

// serveLambda runs inside AWS Lambda, on DynamoDB.
func serveLambda() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lambda: loading the AWS configuration:", err)
		os.Exit(1)
	}
	store, err := dynamo.New(dynamodb.NewFromConfig(cfg), os.Getenv("IDEM_TABLE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "lambda: IDEM_TABLE:", err)
		os.Exit(1)
	}
	app := &App{Store: store, Provider: newProvider(), ledgerFail: map[string]int{}}
	api, sqs, err := app.Handlers(slog.Default())
	if err != nil {
		fmt.Fprintln(os.Stderr, "lambda:", err)
		os.Exit(1)
	}
	switch h := os.Getenv("IDEM_HANDLER"); h {
	case "api":
		lambda.Start(api)
	case "sqs":
		lambda.Start(sqs)
	default:
		fmt.Fprintf(os.Stderr, "lambda: IDEM_HANDLER is %q, want api or sqs\n", h)
		os.Exit(1)
	}
}
