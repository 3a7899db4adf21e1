package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/idemkit/idemkit/idem/event"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/idemkit/idemkit/idem/idemotel"
)

// metrics feeds the demo's events to OpenTelemetry through idemotel, into
// an in-process reader, and prints what a dashboard would show.
type metrics struct {
	reader *sdkmetric.ManualReader
	rec    *idemotel.Recorder
}

func newMetrics(backend string) (*metrics, error) {
	reader := sdkmetric.NewManualReader()
	rec, err := idemotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), noop.NewTracerProvider(),
		idemotel.WithBackend(backend))
	if err != nil {
		return nil, err
	}
	return &metrics{reader: reader, rec: rec}, nil
}

func (m *metrics) events() func(context.Context, event.Event) { return m.rec.Events }

// print writes the idem.events counter, one line per event, op and
// outcome, and the idem.duration histogram's count and mean per event.
func (m *metrics) print(ctx context.Context, w io.Writer) error {
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(ctx, &rm); err != nil {
		return err
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch data := mt.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range data.DataPoints {
					lines = append(lines, fmt.Sprintf("  %-14s %-32s %8d", mt.Name, attrs(p.Attributes), p.Value))
				}
			case metricdata.Histogram[float64]:
				for _, p := range data.DataPoints {
					mean := 0.0
					if p.Count > 0 {
						mean = p.Sum / float64(p.Count)
					}
					lines = append(lines, fmt.Sprintf("  %-14s %-32s %8d  mean %.0f µs", mt.Name, attrs(p.Attributes), p.Count, 1e6*mean))
				}
			}
		}
	}
	slices.Sort(lines)
	fmt.Fprintf(w, "\nmetrics (OpenTelemetry, through idem/idemotel):\n%s\n", strings.Join(lines, "\n"))
	return nil
}

// attrs shows a data point's event, op and outcome.
func attrs(set attribute.Set) string {
	get := func(k string) string {
		v, _ := set.Value(attribute.Key(k))
		return v.String()
	}
	return fmt.Sprintf("%s %s %s", get("idem.event"), get("idem.op"), get("idem.outcome"))
}
