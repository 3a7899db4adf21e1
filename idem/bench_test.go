package idem_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
)

// BenchmarkDo measures Do on the in-memory store: a first execution (claim
// and complete, 2 writes) and a replay (1 write), beside the bare
// PutIfAbsent + CompareAndSwap they are made of.
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	result := Charge{ID: "ch_1", Amount: 1250}
	fn := func(context.Context) (Charge, error) { return result, nil }

	b.Run("first", func(b *testing.B) {
		s := memstore.New()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := idem.Do(ctx, s, fmt.Sprint("k", i), fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("replay", func(b *testing.B) {
		s := memstore.New()
		if _, err := idem.Do(ctx, s, "k", fn); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := idem.Do(ctx, s, "k", fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare-kernel", func(b *testing.B) {
		s := memstore.New()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			key := fmt.Sprint("k", i)
			it, err := s.PutIfAbsent(ctx, key, []byte(`{"status":"in_progress"}`), 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.CompareAndSwap(ctx, key, it.Version, []byte(`{"id":"ch_1","amount":1250}`), 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
