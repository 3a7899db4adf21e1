package idem_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
)

// BenchmarkDo measures Do on the in-memory store, side by side in one run
// with the bare kernel calls it is made of, for a small result and for
// []byte results of 1 KB and 100 KB:
//
//   - first: a first execution (claim and complete, 2 writes);
//   - replay: a duplicate (1 write, whose conflict carries the record);
//   - bare-put-cas: PutIfAbsent + CompareAndSwap of a fresh key, the
//     second write carrying a value of the encoded result's size;
//   - bare-get: Get of a key holding such a value.
//
// Keys are made the same way in every case, so their cost cancels out of
// the ratios.
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	for _, size := range []struct {
		name   string
		result any
	}{
		{"small", Charge{ID: "ch_1", Amount: 1250}},
		{"1KB", bytes.Repeat([]byte{0xa5}, 1<<10)},
		{"100KB", bytes.Repeat([]byte{0xa5}, 100<<10)},
	} {
		result := size.result
		fn := func(context.Context) (any, error) { return result, nil }
		encoded, err := json.Marshal(result)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(size.name+"/first", func(b *testing.B) {
			s := memstore.New()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := idem.Do(ctx, s, strconv.Itoa(i), fn); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(size.name+"/replay", func(b *testing.B) {
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
		b.Run(size.name+"/bare-put-cas", func(b *testing.B) {
			s := memstore.New()
			claim := []byte("in progress, owner token and lease: 64 bytes, as a claim record")
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				key := strconv.Itoa(i)
				it, err := s.PutIfAbsent(ctx, key, claim, 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.CompareAndSwap(ctx, key, it.Version, encoded, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(size.name+"/bare-get", func(b *testing.B) {
			s := memstore.New()
			if _, err := s.PutIfAbsent(ctx, "k", encoded, 0); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Get(ctx, "k"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
