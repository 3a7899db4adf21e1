package idemlambda_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem/idemlambda"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestEvents: WithEvents reports each key under the wrapper's Op.
func TestEvents(t *testing.T) {
	var (
		mu  sync.Mutex
		got []event.Event
	)
	record := func(_ context.Context, e event.Event) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
	}
	check := func(op string, want ...event.Kind) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		var kinds []event.Kind
		for _, e := range got {
			kinds = append(kinds, e.Kind)
			if e.Op != op || e.Key != "t/k" {
				t.Errorf("%v: got op %q, key %q; want %q, t/k", e.Kind, e.Op, e.Key, op)
			}
		}
		if !slices.Equal(kinds, want) {
			t.Errorf("%s: got %v, want %v", op, kinds, want)
		}
		got = nil
	}
	ctx := context.Background()
	opts := []idemlambda.Option{idemlambda.WithEvents(record), idemlambda.WithKeyPrefix("t/")}

	wrapped, err := idemlambda.Wrap(memstore.New(), func(string) (string, error) { return "k", nil },
		func(context.Context, string) (int, error) { return 1, nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	wrapped(ctx, "e")
	wrapped(ctx, "e")
	check("idemlambda.Wrap", event.Claimed, event.Completed, event.Replayed)

	sqs, err := idemlambda.SQS(memstore.New(), func(context.Context, events.SQSMessage) error { return nil },
		opts[0], opts[1])
	if err != nil {
		t.Fatal(err)
	}
	batch := events.SQSEvent{Records: []events.SQSMessage{{MessageId: "k"}}}
	sqs(ctx, batch)
	sqs(ctx, batch)
	check("idemlambda.SQS", event.Claimed, event.Completed, event.Replayed)
}
