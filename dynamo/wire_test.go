package dynamo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestRoundTrips counts HTTP requests at the wire: every kernel operation is
// one request, a conflict carries the current item in that same request (no
// GetItem), a first Do is 2 writes and a duplicate Do is 1.
func TestRoundTrips(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw)
			s := mustStore(t, c, name)
			ctx := ctxT(t)
			fn := func(context.Context) (int, error) { return 42, nil }
			var first idem.Item // the item PutIfAbsent made
			steps := []struct {
				name string
				call func() error
				want map[string]int
			}{
				{"first Do", func() error { _, err := idem.Do(ctx, s, "do", fn); return err },
					map[string]int{"PutItem": 2}},
				{"duplicate Do", func() error {
					v, err := idem.Do(ctx, s, "do", fn)
					if err == nil && v != 42 {
						return errors.New("wrong replayed value")
					}
					return err
				}, map[string]int{"PutItem": 1}},
				{"PutIfAbsent", func() (err error) { first, err = s.PutIfAbsent(ctx, "k", []byte("a"), 0); return err },
					map[string]int{"PutItem": 1}},
				{"PutIfAbsent conflict", func() error {
					_, err := s.PutIfAbsent(ctx, "k", []byte("b"), 0)
					var ce *idem.ConflictError
					if !errors.As(err, &ce) || string(ce.Current.Value) != "a" {
						return errors.New("want a conflict carrying the current item")
					}
					return nil
				}, map[string]int{"PutItem": 1}},
				{"CompareAndSwap", func() error { _, err := s.CompareAndSwap(ctx, "k", first.Version, []byte("c"), 0); return err },
					map[string]int{"PutItem": 1}},
				{"CompareAndSwap conflict", func() error {
					_, err := s.CompareAndSwap(ctx, "k", first.Version, []byte("d"), 0)
					var ce *idem.ConflictError
					if !errors.As(err, &ce) || ce.Current.Version != first.Version+1 {
						return errors.New("want a conflict carrying the version after the swap")
					}
					return nil
				}, map[string]int{"PutItem": 1}},
				{"Upsert not applied", func() error {
					it, applied, err := s.Upsert(ctx, "k", []byte("e"), first.Version, 0)
					if err == nil && (applied || it.Version != first.Version+1) {
						return errors.New("want not applied, returning the version after the swap")
					}
					return err
				}, map[string]int{"PutItem": 1}},
				{"Get", func() error { _, err := s.Get(ctx, "k"); return err },
					map[string]int{"GetItem": 1}},
				{"CompareAndDelete conflict", func() error {
					if err := s.CompareAndDelete(ctx, "k", first.Version); !errors.Is(err, idem.ErrConflict) {
						return errors.New("want a conflict")
					}
					return nil
				}, map[string]int{"DeleteItem": 1}},
				{"CompareAndDelete", func() error { return s.CompareAndDelete(ctx, "k", first.Version+1) },
					map[string]int{"DeleteItem": 1}},
			}
			w.take()
			for _, st := range steps {
				if err := st.call(); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				t.Run(st.name, func(t *testing.T) { checkRequests(t, w, st.want) })
			}
		})
	}
}
