package cassandra_test

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
	"github.com/idemkit/idemkit/internal/testenv"
)

// newProxy starts a faultproxy in front of the Cassandra node, with the
// faults of cfg (Target and Protocol are filled in), closed when the test
// ends.
func newProxy(t testing.TB, cfg faultproxy.Config) *faultproxy.Proxy {
	t.Helper()
	cfg.Target, cfg.Protocol = testenv.CassandraHosts(t)[0], faultproxy.CQL
	p, err := faultproxy.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// armedProxy is a faultproxy that faults only what arm asks for: the next
// QUERY, EXECUTE or BATCH on the driver's pool connections. PREPARE
// passes, so that the first use of a statement, which prepares it, loses
// the execution itself.
type armedProxy struct {
	*faultproxy.Proxy
	next atomic.Int64 // a faultproxy.Fault; Pass: none armed
}

func newArmedProxy(t testing.TB) *armedProxy {
	p := &armedProxy{}
	p.Proxy = newProxy(t, faultproxy.Config{Decide: func(r faultproxy.Request) faultproxy.Fault {
		switch r.Opcode {
		case 0x07, 0x0A, 0x0D: // QUERY, EXECUTE, BATCH
			return faultproxy.Fault(p.next.Swap(int64(faultproxy.Pass)))
		}
		return faultproxy.Pass
	}})
	return p
}

// arm gives fault f to the next QUERY, EXECUTE or BATCH.
func (p *armedProxy) arm(f faultproxy.Fault) { p.next.Store(int64(f)) }

// waitApplied waits (up to a generous bound) until p has applied fault f
// more times than in before. A dropped response is counted when it
// arrives, which may be after the driver gave up on it.
func waitApplied(t testing.TB, p *faultproxy.Proxy, before faultproxy.Stats, f faultproxy.Fault) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); p.Stats().Applied(f) <= before.Applied(f); {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy applied no %v (stats %+v): the test did not test anything", f, p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proxiedSession connects to Cassandra through p only: protocol v4 (plain
// frames the proxy can read), every node address translated to the proxy.
func proxiedSession(t testing.TB, p *faultproxy.Proxy, timeout time.Duration) *gocql.Session {
	t.Helper()
	cluster := gocql.NewCluster(p.Addr())
	cluster.ProtoVersion = 4
	cluster.Timeout = timeout
	cluster.AddressTranslator = gocql.AddressTranslatorFunc(func(net.IP, int) (net.IP, int) {
		return net.IPv4(127, 0, 0, 1), p.Port()
	})
	s, err := cluster.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
