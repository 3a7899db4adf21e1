package idemkafka_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemkafka"
	"github.com/idemkit/idemkit/idem/memstore"
)

// A Handler in a poll loop of your own: a record delivered twice (a
// consumer died before its commit) is applied once, and both deliveries
// may be committed; an event produced twice at two offsets is applied once
// when keyed by its event-id header.
func ExampleHandler() {
	store := memstore.New()
	applied := 0
	h, err := idemkafka.NewHandler(store, func(ctx context.Context, r *kgo.Record) error {
		applied++ // the side effect: apply the order event in r.Value
		return nil
	}, idemkafka.WithKey(idemkafka.Header("event-id")), idemkafka.WithKeyPrefix("orders/events/"))
	if err != nil {
		panic(err)
	}
	ev := func(offset int64) *kgo.Record {
		return &kgo.Record{Topic: "orders", Partition: 0, Offset: offset, Value: []byte(`{"order":"o-1","kind":"paid"}`),
			Headers: []kgo.RecordHeader{{Key: "event-id", Value: []byte("ev-7")}}}
	}
	for _, r := range []*kgo.Record{ev(41), ev(41), ev(42)} { // a redelivery, then a re-sent event
		commit, err := h.Handle(context.Background(), r)
		fmt.Printf("offset %d: commit %v, err %v\n", r.Offset, commit, err)
	}
	fmt.Println("applied", applied)

	// A transient failure: not committable, and the key is free again.
	fails, err := idemkafka.NewHandler(store, func(ctx context.Context, r *kgo.Record) error {
		return errors.New("the orders table is unreachable")
	})
	if err != nil {
		panic(err)
	}
	commit, err := fails.Handle(context.Background(), &kgo.Record{Topic: "orders", Offset: 43})
	fmt.Printf("offset 43: commit %v, err %v\n", commit, err)

	// A permanent failure: stored, committable, never run again.
	perm, err := idemkafka.NewHandler(store, func(ctx context.Context, r *kgo.Record) error {
		return idem.Permanent(errors.New("not an order event"))
	})
	if err != nil {
		panic(err)
	}
	commit, err = perm.Handle(context.Background(), &kgo.Record{Topic: "orders", Offset: 45})
	fmt.Printf("offset 45: commit %v, permanent %v\n", commit, errors.As(err, new(*idem.PermanentError)))
	// Output:
	// offset 41: commit true, err <nil>
	// offset 41: commit true, err <nil>
	// offset 42: commit true, err <nil>
	// applied 1
	// offset 43: commit false, err the orders table is unreachable
	// offset 45: commit true, permanent true
}
