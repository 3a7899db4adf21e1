package kernel_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestDescribeRecord reads the records Do and Claim write, as a tool would
// from a Get.
func TestDescribeRecord(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	past := time.Now().Add(-time.Hour)
	fp := []byte{1, 2, 3}

	if _, err := idem.Do(ctx, s, "done", func(context.Context) (string, error) { return "hi", nil }, idem.WithFingerprint(fp)); err != nil {
		t.Fatal(err)
	}
	if _, err := idem.Do(ctx, s, "failed", func(context.Context) (int, error) {
		return 0, &idem.PermanentError{Code: "card_declined", Err: errors.New("declined")}
	}); !errors.As(err, new(*idem.PermanentError)) {
		t.Fatalf("Do: got %v, want a PermanentError", err)
	}
	if _, _, err := idem.Claim(ctx, s, "live", idem.WithLease(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := idem.Claim(ctx, s, "stale", idem.WithLease(time.Minute), idem.WithClock(func() time.Time { return past })); err != nil {
		t.Fatal(err)
	}
	l, _, err := idem.Claim(ctx, s, "released")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	for _, tc := range []struct {
		key    string
		check  func(kernel.RecordInfo) bool
		passed bool
	}{
		{"done", func(r kernel.RecordInfo) bool {
			return r.Status == kernel.StatusCompleted && string(r.Result) == `"hi"` && bytes.Equal(r.Fingerprint, fp) &&
				!r.Failed && !r.CompletedAt.IsZero() && r.Attempt == 1 && r.Token != ""
		}, false},
		{"failed", func(r kernel.RecordInfo) bool {
			return r.Status == kernel.StatusCompleted && r.Failed && r.ErrorCode == "card_declined" &&
				r.ErrorMessage == "declined" && r.Result == nil
		}, false},
		{"live", func(r kernel.RecordInfo) bool {
			return r.Status == kernel.StatusInProgress && r.LeaseUntil.After(now.Add(50*time.Minute))
		}, false},
		{"stale", func(r kernel.RecordInfo) bool {
			return r.Status == kernel.StatusInProgress && r.LeaseUntil.Equal(past.Add(time.Minute))
		}, true},
		{"released", func(r kernel.RecordInfo) bool { return r.Status == kernel.StatusReleased }, false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			it, err := s.Get(ctx, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := kernel.DescribeRecord(it.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(got) {
				t.Errorf("got %+v", got)
			}
			if p := got.LeasePassed(now); p != tc.passed {
				t.Errorf("LeasePassed: got %v, want %v", p, tc.passed)
			}
			got.Result = append(got.Result[:0:0], 'x') // a copy: the stored record is untouched
			if again, _ := s.Get(ctx, tc.key); !bytes.Equal(again.Value, it.Value) {
				t.Error("the stored value changed")
			}
		})
	}
}

func TestDescribeRecordCorrupt(t *testing.T) {
	for _, v := range [][]byte{nil, []byte("5"), {0x01, 'x', 0}, {0x01, 'c', 9}, []byte(`{"status":"done","token":"t"}`)} {
		if _, err := kernel.DescribeRecord(v); !errors.Is(err, idem.ErrCorrupt) {
			t.Errorf("DescribeRecord(%q): got %v, want ErrCorrupt", v, err)
		}
	}
	// The first format, JSON, is read.
	r, err := kernel.DescribeRecord([]byte(`{"status":"completed","token":"t","result":"MQ==","attempt":2}`))
	if err != nil || r.Status != kernel.StatusCompleted || string(r.Result) != "1" || r.Attempt != 2 {
		t.Errorf("JSON record: got %+v, %v", r, err)
	}
}
