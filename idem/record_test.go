package idem_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
)

// sameRecord reports whether two records say the same, times compared as
// instants.
func sameRecord(a, b idem.Record) bool {
	return a.Status == b.Status && a.Token == b.Token && a.LeaseUntil.Equal(b.LeaseUntil) &&
		bytes.Equal(a.Fingerprint, b.Fingerprint) && bytes.Equal(a.Result, b.Result) &&
		(a.Error == nil) == (b.Error == nil) && (a.Error == nil || *a.Error == *b.Error) &&
		a.Attempt == b.Attempt && a.CreatedAt.Equal(b.CreatedAt) && a.CompletedAt.Equal(b.CompletedAt) &&
		a.LeaseUntil.IsZero() == b.LeaseUntil.IsZero() && a.CreatedAt.IsZero() == b.CreatedAt.IsZero() &&
		a.CompletedAt.IsZero() == b.CompletedAt.IsZero()
}

var (
	recNow = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	token  = "9f00d1a09f62716b9b4e2591a075bf03"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  idem.Record
	}{
		{"in progress", idem.Record{Status: idem.StatusInProgress, Token: token, LeaseUntil: recNow.Add(30 * time.Second), Attempt: 1, CreatedAt: recNow}},
		{"in progress, local times with a monotonic reading", idem.Record{Status: idem.StatusInProgress, Token: token, LeaseUntil: time.Now().Add(time.Minute), Attempt: 2, CreatedAt: time.Now().In(time.FixedZone("", 3600))}},
		{"completed with a result and a fingerprint", idem.Record{Status: idem.StatusCompleted, Token: token, Fingerprint: []byte{0, 1, 2, 0xff}, Result: []byte(`{"id":"ch_1"}`), Attempt: 1, CreatedAt: recNow, CompletedAt: recNow.Add(time.Nanosecond)}},
		{"completed with binary result", idem.Record{Status: idem.StatusCompleted, Token: token, Result: bytes.Repeat([]byte{0x01, '{', 0}, 1000), Attempt: 1, CreatedAt: recNow, CompletedAt: recNow}},
		{"permanent error", idem.Record{Status: idem.StatusCompleted, Token: token, Error: &idem.StoredError{Message: "card declined", Code: "card_declined"}, Attempt: 300, CreatedAt: recNow, CompletedAt: recNow}},
		{"permanent error with nothing in it", idem.Record{Status: idem.StatusCompleted, Token: token, Error: &idem.StoredError{}, Attempt: 1}},
		{"released", idem.Record{Status: idem.StatusReleased, Token: token, Attempt: 1, CreatedAt: recNow, CompletedAt: recNow}},
		{"times far out", idem.Record{Status: idem.StatusInProgress, Token: "t", LeaseUntil: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Attempt: -1, CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), CompletedAt: time.Unix(0, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := idem.EncodeRecord(tc.rec)
			got, err := idem.DecodeRecord("k", data)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !sameRecord(got, tc.rec) {
				t.Fatalf("got %v, want %v", got, tc.rec)
			}
			if again := idem.EncodeRecord(got); !bytes.Equal(again, data) {
				t.Errorf("re-encoding the decoded record changed its bytes:\n got %x\nwant %x", again, data)
			}
			if again := idem.EncodeRecord(tc.rec); !bytes.Equal(again, data) {
				t.Errorf("encoding is not deterministic:\n got %x\nwant %x", again, data)
			}
			if data[0] == '{' {
				t.Errorf("the record starts with '{', which marks the JSON format")
			}
		})
	}
}

// TestRecordSize: a result costs its own size plus a small header.
func TestRecordSize(t *testing.T) {
	for _, n := range []int{0, 1 << 10, 100 << 10} {
		rec := idem.Record{Status: idem.StatusCompleted, Token: token, Fingerprint: bytes.Repeat([]byte{1}, 32),
			Result: bytes.Repeat([]byte{0xa5}, n), Attempt: 1, CreatedAt: time.Now(), CompletedAt: time.Now()}
		if got, most := len(idem.EncodeRecord(rec)), n+100; got > most {
			t.Errorf("a %d-byte result: the record takes %d bytes, want at most %d", n, got, most)
		}
	}
}

// TestRecordFirstFormat reads records as the first format, JSON, wrote
// them (captured from its encoder).
func TestRecordFirstFormat(t *testing.T) {
	created := recNow
	for _, tc := range []struct {
		name string
		data string
		want idem.Record
	}{
		{
			"completed with a result",
			`{"status":"completed","token":"9f00d1a09f62716b9b4e2591a075bf03","lease_until":"0001-01-01T00:00:00Z","fp":"ZnAtMQ==","result":"eyJpZCI6ImNoXzEiLCJhbW91bnQiOjEyNTB9","attempt":1,"created_at":"2025-03-14T15:09:26.535897932Z","completed_at":"2025-03-14T15:09:28.035897932Z"}`,
			idem.Record{Status: idem.StatusCompleted, Token: "9f00d1a09f62716b9b4e2591a075bf03", Fingerprint: []byte("fp-1"),
				Result: []byte(`{"id":"ch_1","amount":1250}`), Attempt: 1, CreatedAt: created, CompletedAt: created.Add(1500 * time.Millisecond)},
		},
		{
			"permanent error",
			`{"status":"completed","token":"b8ad726bca8516f29805e07b5cdfa7b9","lease_until":"0001-01-01T00:00:00Z","error":{"message":"card declined","code":"card_declined"},"attempt":2,"created_at":"2025-03-14T15:09:26.535897932Z","completed_at":"2025-03-14T15:09:27.535897932Z"}`,
			idem.Record{Status: idem.StatusCompleted, Token: "b8ad726bca8516f29805e07b5cdfa7b9", Error: &idem.StoredError{Message: "card declined", Code: "card_declined"},
				Attempt: 2, CreatedAt: created, CompletedAt: created.Add(time.Second)},
		},
		{
			"released",
			`{"status":"released","token":"b6d83d55ccfc89109d2031231038031f","lease_until":"0001-01-01T00:00:00Z","attempt":1,"created_at":"2025-03-14T15:09:26.535897932Z","completed_at":"2025-03-14T15:09:27.535897932Z"}`,
			idem.Record{Status: idem.StatusReleased, Token: "b6d83d55ccfc89109d2031231038031f", Attempt: 1, CreatedAt: created, CompletedAt: created.Add(time.Second)},
		},
		{
			"in progress with a fingerprint",
			`{"status":"in_progress","token":"b91f69c00f76c0eb176041e01f16321a","lease_until":"2025-03-14T15:09:56.535897932Z","fp":"n4bQgQ==","attempt":3,"created_at":"2025-03-14T15:09:26.535897932Z"}`,
			idem.Record{Status: idem.StatusInProgress, Token: "b91f69c00f76c0eb176041e01f16321a", LeaseUntil: created.Add(30 * time.Second),
				Fingerprint: []byte{0x9f, 0x86, 0xd0, 0x81}, Attempt: 3, CreatedAt: created},
		},
		{
			"in progress, a lease with an offset",
			`{"status":"in_progress","token":"t","lease_until":"2025-03-14T17:09:56.535897932+02:00","attempt":1,"created_at":"2025-03-14T15:09:26.535897932Z"}`,
			idem.Record{Status: idem.StatusInProgress, Token: "t", LeaseUntil: created.Add(30 * time.Second), Attempt: 1, CreatedAt: created},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := idem.DecodeRecord("k", []byte(tc.data))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !sameRecord(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			// Written again, it is the binary format, saying the same.
			again, err := idem.DecodeRecord("k", idem.EncodeRecord(got))
			if err != nil || !sameRecord(again, tc.want) {
				t.Fatalf("re-encoded: got %v, %v; want %v", again, err, tc.want)
			}
		})
	}
}

func TestRecordCorrupt(t *testing.T) {
	good := idem.EncodeRecord(idem.Record{Status: idem.StatusCompleted, Token: token, Fingerprint: []byte("fp"),
		Error: &idem.StoredError{Message: "m", Code: "c"}, Attempt: 1, CreatedAt: recNow, CompletedAt: recNow})
	hdr := int(good[2]) // one byte of length for this header
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown format", with(func(b []byte) []byte { b[0] = 0x02; return b })},
		{"JSON-looking garbage", []byte(`{"status":`)},
		{"null", []byte(`null`)},
		{"JSON, unknown status", []byte(`{"status":"weird","token":"t"}`)},
		{"JSON, no token", []byte(`{"status":"completed"}`)},
		{"JSON, trailing data", []byte(`{"status":"completed","token":"t"} {}`)},
		{"format byte only", good[:1]},
		{"unknown status", with(func(b []byte) []byte { b[1] = 'x'; return b })},
		{"no header length", good[:2]},
		{"header length past the end", good[:3+hdr-1]},
		{"header length overflowing", append([]byte{1, 'c'}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
		{"truncated header", with(func(b []byte) []byte { b[2] = 5; return b })},
		{"token length past the header", with(func(b []byte) []byte { b[3] = 0x7f; return b })},
		{"no token", idem.EncodeRecord(idem.Record{Status: idem.StatusCompleted, Attempt: 1})},
		{"trailing bytes in the header", func() []byte {
			b := append([]byte{}, good[:3+hdr]...)
			b[2]++
			return append(b, 0)
		}()},
		{"unknown error flag", func() []byte {
			r := idem.EncodeRecord(idem.Record{Status: idem.StatusReleased, Token: "t", Attempt: 1})
			r[len(r)-1] = 7
			return r
		}()},
		{"nanoseconds out of range", func() []byte {
			// An in-progress record whose lease is given as lease.
			mk := func(lease []byte) []byte {
				h := append(append([]byte{1, 't'}, lease...), 2, 0, 0, 0, 0)
				return append([]byte{1, 'i', byte(len(h))}, h...)
			}
			if _, err := idem.DecodeRecord("k", mk([]byte{0})); err != nil {
				t.Fatalf("the same with a zero lease: %v", err)
			}
			return mk(binary.AppendVarint(binary.AppendUvarint(nil, 1e9+1), recNow.Unix()))
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := idem.DecodeRecord("k", tc.data)
			if !errors.Is(err, idem.ErrCorrupt) {
				t.Fatalf("got %v, %v; want an error matching ErrCorrupt", r, err)
			}
		})
	}
}

// TestRecordString: the debugging form says what a console reader needs.
func TestRecordString(t *testing.T) {
	rec := idem.Record{Status: idem.StatusCompleted, Token: token, Fingerprint: []byte{0xab},
		Result: []byte(`{"id":"ch_1"}`), Attempt: 2, CreatedAt: recNow, CompletedAt: recNow}
	got := rec.String()
	for _, want := range []string{"completed", token, "attempt=2", "2025-03-14T15:09:26.535897932Z", "fp=ab", `"{\"id\":\"ch_1\"}"`} {
		if !strings.Contains(got, want) {
			t.Errorf("%s: want %s in it", got, want)
		}
	}
	rec.Result = []byte{0, 1, 2}
	if got := rec.String(); !strings.Contains(got, "0x000102") {
		t.Errorf("%s: want the binary result in hex", got)
	}
}
