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
//   - cached: a duplicate answered from an idem.Cache (no store call);
//   - bare-put-cas: PutIfAbsent + CompareAndSwap of a fresh key, the
//     second write carrying a value of the encoded result's size;
//   - bare-get: Get of a key holding such a value.
//
// Keys are made the same way in every case, so their cost cancels out of
// the ratios.
func BenchmarkDo(b *testing.B) {
	benchDo(b, "small", Charge{ID: "ch_1", Amount: 1250})
	benchDo(b, "1KB", bytes.Repeat([]byte{0xa5}, 1<<10))
	benchDo(b, "100KB", bytes.Repeat([]byte{0xa5}, 100<<10))
}

// benchDo runs BenchmarkDo's cases for one result, decoded as its own type.
func benchDo[T any](b *testing.B, name string, result T) {
	ctx := context.Background()
	fn := func(context.Context) (T, error) { return result, nil }
	encoded, err := json.Marshal(result)
	if err != nil {
		b.Fatal(err)
	}
	b.Run(name+"/first", func(b *testing.B) {
		s := memstore.New()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := idem.Do(ctx, s, strconv.Itoa(i), fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(name+"/replay", func(b *testing.B) {
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
	b.Run(name+"/cached", func(b *testing.B) {
		s, c := memstore.New(), idem.NewCache(10, 0)
		if _, err := idem.Do(ctx, s, "k", fn, idem.WithCache(c)); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := idem.Do(ctx, s, "k", fn, idem.WithCache(c)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(name+"/bare-put-cas", func(b *testing.B) {
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
	b.Run(name+"/bare-get", func(b *testing.B) {
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
