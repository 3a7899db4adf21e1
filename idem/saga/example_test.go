package saga_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/idem/saga"
)

func ExampleRun() {
	store := memstore.New()
	ctx := context.Background()
	hotelFull := true

	book := func(ctx context.Context, sg *saga.Saga) error {
		flight, err := saga.Step(ctx, sg, "flight",
			func(ctx context.Context) (string, error) {
				fmt.Println("booking the flight")
				return "FL-1", nil
			},
			func(ctx context.Context, ref string) error {
				fmt.Println("cancelling flight", ref)
				return nil
			})
		if err != nil {
			return err
		}
		_, err = saga.Step(ctx, sg, "hotel",
			func(ctx context.Context) (string, error) {
				if hotelFull {
					fmt.Println("the hotel is full")
					return "", idem.Permanent(errors.New("no rooms")) // aborts the saga
				}
				return "HT-1", nil
			}, nil)
		if err != nil {
			return err
		}
		fmt.Println("booked", flight)
		return nil
	}

	err := saga.Run(ctx, store, "trip-42", book)
	fmt.Println(err)

	// Running the saga again (a redelivered message, a retried job) runs
	// nothing and gives the same answer.
	hotelFull = false
	err = saga.Run(ctx, store, "trip-42", book)
	fmt.Println(errors.Is(err, saga.ErrAborted))
	// Output:
	// booking the flight
	// the hotel is full
	// cancelling flight FL-1
	// saga "trip-42" aborted and compensated: no rooms
	// true
}
