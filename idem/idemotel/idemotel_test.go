package idemotel_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemotel"
	"github.com/idemkit/idemkit/idem/memstore"
)

type setup struct {
	rec    *idemotel.Recorder
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
}

func newSetup(t *testing.T, opts ...idemotel.Option) setup {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewSpanRecorder()
	rec, err := idemotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return setup{rec, reader, spans}
}

// collect returns the Recorder's metrics by name.
func (s setup) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != idemotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, idemotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// counts returns idem.events' counts by "event/op/outcome".
func counts(t *testing.T, m metricdata.Metrics, backend string) map[string]int64 {
	t.Helper()
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok || !sum.IsMonotonic {
		t.Fatalf("%s: got %T, want a monotonic int64 sum", m.Name, m.Data)
	}
	out := map[string]int64{}
	for _, dp := range sum.DataPoints {
		get := func(k attribute.Key) string { v, _ := dp.Attributes.Value(k); return v.AsString() }
		if get(idemotel.BackendKey) != backend {
			t.Errorf("backend: got %q, want %q", get(idemotel.BackendKey), backend)
		}
		for _, kv := range dp.Attributes.ToSlice() {
			switch kv.Key {
			case idemotel.EventKey, idemotel.OpKey, idemotel.OutcomeKey, idemotel.BackendKey:
			default:
				t.Errorf("unexpected attribute %v", kv)
			}
		}
		out[get(idemotel.EventKey)+"/"+get(idemotel.OpKey)+"/"+get(idemotel.OutcomeKey)] += dp.Value
	}
	return out
}

func ok(context.Context) (string, error) { return "ok", nil }

// TestMetrics: the events of a first call, a replay, a mismatch and a
// failed call, counted by event, op and outcome, with their durations.
func TestMetrics(t *testing.T) {
	su := newSetup(t, idemotel.WithBackend("memory"))
	ctx := context.Background()
	s := memstore.New()
	hook := idem.WithEvents(su.rec.Events)
	idem.Do(ctx, s, "secret-key", ok, hook)
	idem.Do(ctx, s, "secret-key", ok, hook)
	idem.Do(ctx, s, "secret-key", ok, hook, idem.WithFingerprint([]byte("other")))
	idem.Once(ctx, s, "msg", func(context.Context) error { return errors.New("boom") }, hook)

	ms := su.collect(t)
	got := counts(t, ms[idemotel.EventsName], "memory")
	want := map[string]int64{
		"claimed/Do/ok":        1,
		"completed/Do/ok":      1,
		"replayed/Do/ok":       1,
		"mismatch/Do/mismatch": 1,
		"claimed/Once/ok":      1,
		"released/Once/error":  1,
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: got %d, want %d", k, got[k], n)
		}
	}
	if m := ms[idemotel.EventsName]; m.Unit != "{event}" {
		t.Errorf("%s unit: got %q", m.Name, m.Unit)
	}

	d, okd := ms[idemotel.DurationName]
	if !okd || d.Unit != "s" {
		t.Fatalf("%s: got %+v, want a histogram in seconds", idemotel.DurationName, d)
	}
	hist := d.Data.(metricdata.Histogram[float64])
	var n uint64
	for _, dp := range hist.DataPoints {
		n += dp.Count
	}
	if n != 6 {
		t.Errorf("%s: got %d observations, want one per event, 6", d.Name, n)
	}
}

// TestSpans: Do makes a span per call whose events are the call's (no
// extension, no key), an error status for a failure; WithKeyHash adds a
// stable hash of the key that is not the key.
func TestSpans(t *testing.T) {
	su := newSetup(t, idemotel.WithKeyHash([]byte("k3y")))
	ctx := context.Background()
	s := memstore.New()
	if _, _, err := idem.Claim(ctx, s, "abandoned", idem.WithLease(time.Second)); err != nil {
		t.Fatal(err)
	}
	future := idem.WithClock(func() time.Time { return time.Now().Add(time.Hour) })
	idemotel.Do(ctx, su.rec, s, "abandoned", ok, future)
	idemotel.Do(ctx, su.rec, s, "abandoned", ok)
	if _, err := idemotel.Do(ctx, su.rec, s, "bad", func(context.Context) (int, error) { return 0, errors.New("boom") }); err == nil {
		t.Fatal("want fn's error")
	}

	spans := su.spans.Ended()
	if len(spans) != 3 {
		t.Fatalf("got %d spans, want 3", len(spans))
	}
	var hashes []string
	for i, want := range [][]string{
		{"idem.takeover", "idem.completed"},
		{"idem.replayed"},
		{"idem.claimed", "idem.released"},
	} {
		sp := spans[i]
		if sp.Name() != "idem.Do" {
			t.Errorf("span %d: name %q, want idem.Do", i, sp.Name())
		}
		var names []string
		for _, ev := range sp.Events() {
			if ev.Name != "exception" {
				names = append(names, ev.Name)
			}
		}
		if !slices.Equal(names, want) {
			t.Errorf("span %d: events %v, want %v", i, names, want)
		}
		for _, kv := range sp.Attributes() {
			if kv.Key == idemotel.KeyHashKey {
				hashes = append(hashes, kv.Value.AsString())
			}
			if strings.Contains(kv.Value.String(), "abandoned") {
				t.Errorf("span %d exports the key: %v", i, kv)
			}
		}
	}
	if len(hashes) != 3 || hashes[0] != hashes[1] || hashes[0] == hashes[2] || len(hashes[0]) != 16 {
		t.Errorf("key hashes %q: want 3, the first two equal, 16 hex digits", hashes)
	}
	if ev := spans[0].Events()[0]; !slices.Contains(ev.Attributes, idemotel.AttemptKey.Int(2)) {
		t.Errorf("takeover event: attributes %v, want attempt 2", ev.Attributes)
	}
	if got := spans[2].Status().Code.String(); got != "Error" {
		t.Errorf("failed call's status: got %s, want Error", got)
	}
}

// TestNoKeyByDefault: without WithKeyHash no span carries a key attribute.
func TestNoKeyByDefault(t *testing.T) {
	su := newSetup(t)
	idemotel.Do(context.Background(), su.rec, memstore.New(), "k", ok)
	for _, sp := range su.spans.Ended() {
		for _, kv := range sp.Attributes() {
			if kv.Key == idemotel.KeyHashKey {
				t.Errorf("span %s has %v", sp.Name(), kv)
			}
		}
	}
}

func TestNewRejectsNil(t *testing.T) {
	if _, err := idemotel.New(nil, noop.NewTracerProvider()); !errors.Is(err, idem.ErrInvalid) {
		t.Errorf("got %v, want ErrInvalid", err)
	}
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{idem.ErrLeaseLost, "lease_lost"},
		{&idem.InProgressError{Key: "k"}, "in_progress"},
		{idem.Permanent(errors.New("no")), "permanent"},
		{context.Canceled, "canceled"},
		{errors.New("other"), "error"},
	} {
		if got := idemotel.Outcome(tc.err); got != tc.want {
			t.Errorf("Outcome(%v): got %q, want %q", tc.err, got, tc.want)
		}
	}
}
