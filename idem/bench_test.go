package idem_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

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

// BenchmarkDoRatio puts Do beside the bare kernel calls it is made of in
// one run, alternating chunks of calls of each so that load on a shared
// machine hits both alike, and reports both sides' ns/op and their ratio
// (x): a first Do over PutIfAbsent + CompareAndSwap, and a replay from an
// idem.Cache over a Get of the key. The Cache's ratio is shown for an int
// result and for a small struct, whose decoding by encoding/json is most
// of the replay's time.
func BenchmarkDoRatio(b *testing.B) {
	ctx := context.Background()
	charge := func(context.Context) (Charge, error) { return Charge{ID: "ch_1", Amount: 1250}, nil }
	number := func(context.Context) (int, error) { return 1250, nil }
	b.Run("first", func(b *testing.B) {
		s, bare := memstore.New(), memstore.New()
		claim := []byte("in progress, owner token and lease: 64 bytes, as a claim record")
		encoded, _ := json.Marshal(Charge{ID: "ch_1", Amount: 1250})
		interleave(b, func(i int) error {
			_, err := idem.Do(ctx, s, strconv.Itoa(i), charge)
			return err
		}, func(i int) error {
			key := strconv.Itoa(i)
			it, err := bare.PutIfAbsent(ctx, key, claim, 0)
			if err == nil {
				_, err = bare.CompareAndSwap(ctx, key, it.Version, encoded, 0)
			}
			return err
		})
	})
	b.Run("cached/int", func(b *testing.B) { benchCachedRatio(b, number) })
	b.Run("cached/small", func(b *testing.B) { benchCachedRatio(b, charge) })
}

// benchCachedRatio is BenchmarkDoRatio's cached replay of fn's result.
func benchCachedRatio[T any](b *testing.B, fn func(context.Context) (T, error)) {
	ctx := context.Background()
	s, c := memstore.New(), idem.NewCache(10, 0)
	if _, err := idem.Do(ctx, s, "k", fn, idem.WithCache(c)); err != nil {
		b.Fatal(err)
	}
	bare := memstore.New()
	v, _ := fn(ctx)
	encoded, _ := json.Marshal(v)
	if _, err := bare.PutIfAbsent(ctx, "k", encoded, 0); err != nil {
		b.Fatal(err)
	}
	interleave(b, func(int) error {
		_, err := idem.Do(ctx, s, "k", fn, idem.WithCache(c))
		return err
	}, func(int) error {
		_, err := bare.Get(ctx, "k")
		return err
	})
}

// interleave runs lib and bare, each b.N times, in alternating chunks,
// and reports their ns/op (lib-ns/op, bare-ns/op) and ratio (x); i
// numbers each side's calls.
func interleave(b *testing.B, lib, bare func(i int) error) {
	const chunk = 256
	var libT, bareT time.Duration
	run := func(f func(int) error, from, n int) time.Duration {
		start := time.Now()
		for i := from; i < from+n; i++ {
			if err := f(i); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	for done := 0; done < b.N; done += chunk {
		n := min(chunk, b.N-done)
		if done/chunk%2 == 0 {
			libT += run(lib, done, n)
			bareT += run(bare, done, n)
		} else {
			bareT += run(bare, done, n)
			libT += run(lib, done, n)
		}
	}
	libNs, bareNs := float64(libT)/float64(b.N), float64(bareT)/float64(b.N)
	b.ReportMetric(0, "ns/op") // both sides: read the metrics below
	b.ReportMetric(libNs, "lib-ns/op")
	b.ReportMetric(bareNs, "bare-ns/op")
	b.ReportMetric(libNs/bareNs, "x")
}
