package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/idemkit/idemkit/internal/testenv"
)

// TestSQSQueue sends a message to a fresh queue of each SQS server, receives it, deletes it
// and finds the queue empty.
func TestSQSQueue(t *testing.T) {
	for _, srv := range testenv.SQSServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := srv.Client(t)
			// A long visibility timeout: on a loaded moto the delete may come more than a second
			// after the receive, and must still find the message in flight.
			url := testenv.Queue(t, c, map[string]string{"VisibilityTimeout": "60"})
			if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("hello")}); err != nil {
				t.Fatal(err)
			}
			out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "hello" {
				t.Fatalf("received %+v, want the one message sent", out.Messages)
			}
			if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: out.Messages[0].ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
			if v, f, err := testenv.QueueDepth(ctx, c, url); err != nil || v+f != 0 {
				t.Fatalf("depth %d visible, %d in flight (%v), want 0", v, f, err)
			}
		})
	}
}
