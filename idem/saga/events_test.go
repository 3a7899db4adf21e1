package saga_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/idem/saga"
)

// TestEvents: WithEvents reports the saga's claim and its steps', each
// under its own Op, and a re-run's replay.
func TestEvents(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	record := func(_ context.Context, e event.Event) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%s %s %s", e.Op, e.Kind, e.Key))
	}
	s := memstore.New()
	body := func(ctx context.Context, sg *saga.Saga) error {
		_, err := saga.Step(ctx, sg, "charge", func(context.Context) (int, error) { return 1, nil }, nil)
		return err
	}
	ctx := context.Background()
	for range 2 {
		if err := saga.Run(ctx, s, "order-1", body, saga.WithEvents(record), saga.WithKeyPrefix("p/")); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"saga.Run claimed p/" + idem.JoinKey("order-1", "saga"),
		"saga.Step claimed p/" + idem.JoinKey("order-1", "step", "charge"),
		"saga.Step completed p/" + idem.JoinKey("order-1", "step", "charge"),
		"saga.Run completed p/" + idem.JoinKey("order-1", "saga"),
		"saga.Run replayed p/" + idem.JoinKey("order-1", "saga"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}
