package idemlambda_test

import (
	"context"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemlambda"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestWithCache: a redelivered event or message that this environment
// handled is answered from the cache, with no store call.
func TestWithCache(t *testing.T) {
	s := idemtest.NewCounting(memstore.New())
	c := idem.NewCache(100, 0)
	runs := 0
	h, err := idemlambda.Wrap(s, func(e string) (string, error) { return e, nil }, func(ctx context.Context, e string) (string, error) {
		runs++
		return "done:" + e, nil
	}, idemlambda.WithCache(c))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := h(ctx, "order-1"); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	if got, err := h(ctx, "order-1"); err != nil || got != "done:order-1" {
		t.Fatalf("the redelivery: %q, %v", got, err)
	}
	if got := s.Counts(); got != (idemtest.Counts{}) || runs != 1 {
		t.Errorf("the redelivery made store calls %+v (handler ran %d times), want none and 1", got, runs)
	}

	sqs, err := idemlambda.SQS(s, func(ctx context.Context, m events.SQSMessage) error { runs++; return nil }, idemlambda.WithCache(c))
	if err != nil {
		t.Fatal(err)
	}
	batch := events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m-1", Body: "{}"}}}
	if _, err := sqs(ctx, batch); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	if resp, err := sqs(ctx, batch); err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("the redelivered batch: %+v, %v", resp, err)
	}
	if got := s.Counts(); got != (idemtest.Counts{}) || runs != 2 {
		t.Errorf("the redelivered message made store calls %+v (handler ran %d times), want none and 2 in all", got, runs)
	}
}
