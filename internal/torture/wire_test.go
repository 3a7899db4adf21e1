package torture

import (
	"net/url"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
)

// proxyWire is a faultproxy.Proxy as the harness's Wire.
type proxyWire struct{ p *faultproxy.Proxy }

func (w proxyWire) SetFaults(on bool) { w.p.SetFaults(on) }

func (w proxyWire) Stats() WireStats {
	s := w.p.Stats()
	return WireStats{Requests: s.Requests, Dropped: s.Dropped, Cut: s.CutAtResponse + s.CutNow, Delayed: s.Delayed + s.DelayedRequests}
}

// startWire starts a fault proxy in front of target with the plan's fault
// probabilities and seed, closed when t ends.
func startWire(t *testing.T, p Plan, proto faultproxy.Protocol, target string) proxyWire {
	t.Helper()
	px, err := faultproxy.Start(faultproxy.Config{
		Target: target, Protocol: proto, Seed: p.Seed,
		Drop: p.Drop, CutAtResponse: p.CutAtResp, CutNow: p.CutNow, Delay: p.Delay, DelayRequest: p.DelayReq,
		DelayBy:  p.DelayBy,
		Lifetime: p.Deadline + 5*time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = px.Close() })
	return proxyWire{px}
}

// startHTTPWire puts a fault proxy in front of a DynamoDB endpoint and
// returns the URL children use.
func startHTTPWire(t *testing.T, p Plan, endpoint string) (Wire, string) {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	w := startWire(t, p, faultproxy.HTTP, u.Host)
	return w, "http://" + w.p.Addr()
}

// startCQLWire puts a fault proxy in front of a Cassandra node and
// returns the address children connect to.
func startCQLWire(t *testing.T, p Plan, host string) (Wire, string) {
	t.Helper()
	w := startWire(t, p, faultproxy.CQL, host)
	return w, w.p.Addr()
}
