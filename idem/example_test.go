package idem_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
)

type Charge struct {
	ID     string `json:"id"`
	Amount int    `json:"amount"`
}

func ExampleDo() {
	store := memstore.New() // or dynamo.New(...), cassandra.New(...)
	ctx := context.Background()

	charge := func(ctx context.Context) (Charge, error) {
		fmt.Println("charging the card")
		return Charge{ID: "ch_1", Amount: 1250}, nil
	}
	c, err := idem.Do(ctx, store, "order-42", charge)
	fmt.Println(c, err)
	// Output:
	// charging the card
	// {ch_1 1250} <nil>
}

func ExampleDo_replay() {
	store := memstore.New()
	ctx := context.Background()
	charge := func(ctx context.Context) (Charge, error) {
		fmt.Println("charging the card")
		return Charge{ID: "ch_1", Amount: 1250}, nil
	}

	idem.Do(ctx, store, "order-42", charge)
	// The client timed out and retries with the same key.
	c, err := idem.Do(ctx, store, "order-42", charge)
	fmt.Println(c, err)
	// Output:
	// charging the card
	// {ch_1 1250} <nil>
}

func ExampleDo_mismatch() {
	store := memstore.New()
	ctx := context.Background()
	pay := func(amount int) error {
		fp, _ := idem.Fingerprint(map[string]int{"amount": amount})
		_, err := idem.Do(ctx, store, "order-42", func(ctx context.Context) (Charge, error) {
			return Charge{ID: "ch_1", Amount: amount}, nil
		}, idem.WithFingerprint(fp))
		return err
	}

	fmt.Println(pay(1250))
	err := pay(9999) // the same key reused for a different request
	fmt.Println(errors.Is(err, idem.ErrMismatch))
	// Output:
	// <nil>
	// true
}

func ExampleOnce() {
	store := memstore.New()
	ctx := context.Background()
	for _, msg := range []string{"m-1", "m-2", "m-1"} { // m-1 is redelivered
		ran, err := idem.Once(ctx, store, "orders-queue/"+msg, func(ctx context.Context) error {
			fmt.Println("handling", msg)
			return nil
		})
		fmt.Println(msg, ran, err)
	}
	// Output:
	// handling m-1
	// m-1 true <nil>
	// handling m-2
	// m-2 true <nil>
	// m-1 false <nil>
}

func ExampleCounter_Add() {
	store := memstore.New()
	ctx := context.Background()
	for _, op := range []string{"deposit-1", "deposit-2", "deposit-1"} {
		total, applied, _ := idem.Counter{Store: store, Key: "balance/alice"}.Add(ctx, op, 100)
		fmt.Println(op, total, applied)
	}
	// Output:
	// deposit-1 100 true
	// deposit-2 200 true
	// deposit-1 200 false
}

func ExampleClaim() {
	store := memstore.New()
	ctx := context.Background()

	lease, _, err := idem.Claim(ctx, store, "webhook/evt_1")
	if err != nil {
		panic(err)
	}
	if lease != nil { // we own the key: do the work, then record the answer
		lease.Complete(ctx, []byte(`{"status":200}`))
	}

	// A redelivery finds the answer: no lease, the stored result.
	lease, result, err := idem.Claim(ctx, store, "webhook/evt_1")
	fmt.Println(lease == nil, string(result), err)
	// Output:
	// true {"status":200} <nil>
}
