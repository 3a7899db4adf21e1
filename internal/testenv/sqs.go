package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQSServer is one SQS-compatible endpoint to test against: a DynamoDB server of
// DynamoDBServers that serves SQS on the same endpoint, as moto does. testenv's ministack
// runs with SERVICES=dynamodb and answers "Unsupported service: sqs".
type SQSServer struct {
	Name     string // as the DynamoDB server's
	Endpoint string // the base URL, e.g. http://127.0.0.1:5000
}

// SQSServers returns the DynamoDB servers (DynamoDBServers) that serve SQS, found by asking
// each once per test binary for ListQueues. When none does it skips t, or fails it when
// RequireServers.
//
//	for _, srv := range testenv.SQSServers(t) {
//		t.Run(srv.Name, func(t *testing.T) { c := srv.Client(t); url := testenv.Queue(t, c, nil); ... })
//	}
func SQSServers(t testing.TB) []SQSServer {
	t.Helper()
	var out []SQSServer
	var why []string
	for _, d := range DynamoDBServers(t) {
		s := SQSServer{Name: d.Name, Endpoint: d.Endpoint}
		if err := probeSQS(s); err != nil {
			why = append(why, fmt.Sprintf("%s: %v", s.Name, err))
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		unavailable(t, "no DynamoDB server serves SQS ("+strings.Join(why, "; ")+")")
	}
	return out
}

var sqsProbes sync.Map // endpoint → func() error, from sync.OnceValue

// probeSQS reports whether s answers ListQueues, asking once per endpoint.
func probeSQS(s SQSServer) error {
	probe, _ := sqsProbes.LoadOrStore(s.Endpoint, sync.OnceValue(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := sqs.New(sqsOptions(s)).ListQueues(ctx, &sqs.ListQueuesInput{})
		return err
	}))
	return probe.(func() error)()
}

func sqsOptions(s SQSServer) sqs.Options {
	return sqs.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(s.Endpoint),
		HTTPClient:   newDynamoDBHTTPClient(),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 3
			o.MaxBackoff = 200 * time.Millisecond
			o.RateLimiter = ratelimit.None
		}),
	}
}

// Client returns an SQS client for the server, set up as DynamoDBServer.Client sets up its
// DynamoDB clients: region us-east-1, static test credentials, idle connections closed after
// DynamoDBIdleConnTimeout, 3 attempts with short backoff and no retry quota. optFns adjust
// the options further, e.g. to install an http.RoundTripper that injects faults.
func (s SQSServer) Client(t testing.TB, optFns ...func(*sqs.Options)) *sqs.Client {
	t.Helper()
	return sqs.New(sqsOptions(s), optFns...)
}

// Queue creates a queue of the test's own (named by UniqueName) with attrs (e.g.
// "VisibilityTimeout": "1") and returns its URL: a standard queue, or a FIFO queue (its
// name ending in ".fifo") when attrs has "FifoQueue": "true". It is deleted when t ends; a failure other
// than "does not exist" is reported with t.Errorf.
func Queue(t testing.TB, c *sqs.Client, attrs map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := UniqueName(t, "q")
	if attrs["FifoQueue"] == "true" {
		name += ".fifo" // UniqueName is 48 characters at most, SQS allows 80
	}
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("testenv: creating a queue: %v", err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
		if _, gone := errors.AsType[*types.QueueDoesNotExist](err); err != nil && !gone {
			t.Errorf("testenv: deleting queue %s: %v", url, err)
		}
	})
	return url
}

// QueueDepth returns how many messages the queue holds, visible and in flight (received and
// neither deleted nor visible again), as SQS approximates them.
func QueueDepth(ctx context.Context, c *sqs.Client, url string) (visible, inFlight int, err error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("testenv: attributes of queue %s: %w", url, err)
	}
	if _, err := fmt.Sscan(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)], &visible); err != nil {
		return 0, 0, fmt.Errorf("testenv: queue %s: ApproximateNumberOfMessages: %w", url, err)
	}
	if _, err := fmt.Sscan(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)], &inFlight); err != nil {
		return 0, 0, fmt.Errorf("testenv: queue %s: ApproximateNumberOfMessagesNotVisible: %w", url, err)
	}
	return visible, inFlight, nil
}
