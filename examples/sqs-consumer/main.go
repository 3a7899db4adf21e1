// Command sqs-consumer is an order-events consumer on a real SQS queue,
// made effectively-once with idemsqs: every event is applied once although
// the producer re-sends some of them as new messages, a consumer dies after
// applying an event and before deleting its message, and a slow event
// outlives the queue's visibility timeout.
//
// It creates a queue of its own (deleted at the end) with a 1 s visibility
// timeout, sends the events, runs the consumers, prints what happened and
// exits 1 if an event was applied other than once or the queue did not
// drain:
//
//	go run ./examples/sqs-consumer                      # keys in the embedded store
//	go run ./examples/sqs-consumer -store=dynamodb      # or cassandra; see examples/internal/backend
//
// The queue is at -sqs-endpoint, by default the first DynamoDB endpoint the
// tests use (IDEM_DYNAMODB_ENDPOINT, else the first entry of
// IDEM_DYNAMODB_ENDPOINTS): moto serves SQS there. The consumers short-poll
// by default (-wait=0s): testenv's moto answers one request at a time, so a
// long poll would hold every other request for its wait. Against SQS, use
// -wait=20s.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/idemkit/idemkit/examples/internal/backend"
	"github.com/idemkit/idemkit/examples/internal/report"
)

func main() {
	kind := backend.Flag()
	endpoint := flag.String("sqs-endpoint", defaultEndpoint(), "the SQS endpoint (empty: AWS's)")
	wait := flag.Duration("wait", 0, "how long a receive waits for a message (0: short polling; up to 20s)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, closeStore := backend.MustOpen(ctx, "sqs-consumer", *kind)
	defer closeStore()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(cmp.Or(os.Getenv("AWS_REGION"), "us-east-1")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "sqs-consumer: loading AWS config:", err)
		os.Exit(2)
	}
	client := sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		if *endpoint != "" {
			o.BaseEndpoint = aws.String(*endpoint)
			if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
				o.Credentials = credentials.NewStaticCredentialsProvider("test", "test", "") // an emulator's
			}
		}
	})

	fmt.Printf("idemkit SQS consumer demo on the %s store, queue at %s\n\n", *kind, cmp.Or(*endpoint, "AWS"))
	rep, err := Run(ctx, store, client, Config{Wait: *wait})
	report.Finish("sqs-consumer", rep, err)
}

// defaultEndpoint is IDEM_DYNAMODB_ENDPOINT, else the URL of the first entry
// of IDEM_DYNAMODB_ENDPOINTS.
func defaultEndpoint() string {
	if ep := os.Getenv("IDEM_DYNAMODB_ENDPOINT"); ep != "" {
		return ep
	}
	first, _, _ := strings.Cut(os.Getenv("IDEM_DYNAMODB_ENDPOINTS"), ",")
	_, ep, _ := strings.Cut(first, "=")
	return ep
}
