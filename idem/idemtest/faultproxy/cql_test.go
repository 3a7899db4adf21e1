package faultproxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
	"github.com/idemkit/idemkit/internal/testenv"
)

// cqlProxy starts a proxy in front of the single Cassandra node, and makes
// a table in a fresh keyspace.
func cqlProxy(t testing.TB, cfg faultproxy.Config) (p *faultproxy.Proxy, admin *gocql.Session, table string) {
	t.Helper()
	admin, ks := testenv.Cassandra(t)
	table = ks + ".t"
	if err := admin.Query("CREATE TABLE " + table + " (k text PRIMARY KEY, v text)").Exec(); err != nil {
		t.Fatal(err)
	}
	cfg.Target, cfg.Protocol = testenv.CassandraHosts(t)[0], faultproxy.CQL
	return start(t, cfg), admin, table
}

// proxied connects to Cassandra through p only, as the package
// documentation says: protocol v4, every node's address translated to p.
func proxied(t testing.TB, p *faultproxy.Proxy, config func(*gocql.ClusterConfig)) *gocql.Session {
	t.Helper()
	cluster := gocql.NewCluster(p.Addr())
	cluster.ProtoVersion = 4
	cluster.Timeout = 30 * time.Second // the tests give up themselves when a response is dropped
	cluster.AddressTranslator = gocql.AddressTranslatorFunc(func(net.IP, int) (net.IP, int) {
		return net.IPv4(127, 0, 0, 1), p.Port()
	})
	if config != nil {
		config(cluster)
	}
	s, err := cluster.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func stored(t testing.TB, admin *gocql.Session, table, k string) bool {
	t.Helper()
	var v string
	err := admin.Query("SELECT v FROM "+table+" WHERE k = ?", k).Scan(&v)
	if err != nil && !errors.Is(err, gocql.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestCQLFaults gives each fault to one EXECUTE of a prepared INSERT
// (non-idempotent, so the driver does not send it again) and checks both
// ends: whether the row was written, what the driver reported, and that
// the proxy counted the fault. A dropped response or request leaves the
// driver waiting (the test gives up once the proxy has thrown it away); a cut
// fails the query at once; a delay holds the response or the request at
// least DelayBy.
func TestCQLFaults(t *testing.T) {
	const delayBy = 300 * time.Millisecond
	for _, tc := range []struct {
		fault   faultproxy.Fault
		written bool // the row was written
		ok      bool // the driver reported success
	}{
		{faultproxy.DropResponse, true, false},
		{faultproxy.CutAtResponse, true, false},
		{faultproxy.CutNow, false, false},
		{faultproxy.Delay, true, true},
		{faultproxy.DelayRequest, true, true},
		{faultproxy.DropRequest, false, false},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			var next atomic.Int64 // the fault of the next EXECUTE
			p, admin, table := cqlProxy(t, faultproxy.Config{DelayBy: delayBy, Decide: func(r faultproxy.Request) faultproxy.Fault {
				if r.Opcode != 0x0A {
					return faultproxy.Pass
				}
				return faultproxy.Fault(next.Swap(int64(faultproxy.Pass)))
			}})
			s := proxied(t, p, nil)
			insert := "INSERT INTO " + table + " (k, v) VALUES (?, ?)"
			if err := s.Query(insert, "warm-up", "x").Exec(); err != nil { // prepares
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			waits := tc.fault == faultproxy.DropResponse || tc.fault == faultproxy.DropRequest
			if waits {
				go cancelWhen(lost(p), cancel) // the driver would wait its whole timeout
			}
			next.Store(int64(tc.fault))
			begin := time.Now()
			err := s.Query(insert, "k", "v").ExecContext(ctx)
			took := time.Since(begin)
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want success %v", err, tc.ok)
			}
			if canceled := errors.Is(err, context.Canceled); canceled != waits {
				t.Errorf("got %v: want the driver to wait (until the test gives up) for a dropped response or request only", err)
			}
			if tc.ok && took < delayBy {
				t.Errorf("the query took %v, want at least %v", took, delayBy)
			}
			if got := stored(t, admin, table, "k"); got != tc.written {
				t.Errorf("row written: %v, want %v", got, tc.written)
			}
			if n := p.Stats().Applied(tc.fault); n != 1 {
				t.Errorf("stats %+v: want the fault counted once", p.Stats())
			}
			if err := s.Query(insert, "after", "x").Exec(); err != nil {
				t.Errorf("after the fault: %v", err)
			}
		})
	}
}

// TestCQLControlConnection: with every faultable request cut at once, a
// session still connects (the driver's queries of system tables and the
// whole control connection, the one that sends REGISTER, are spared), its
// own statements all fail, and the control connection is never closed.
// A dialer in the driver watches which connection sends REGISTER.
func TestCQLControlConnection(t *testing.T) {
	p, _, table := cqlProxy(t, faultproxy.Config{Decide: func(faultproxy.Request) faultproxy.Fault { return faultproxy.CutNow }})
	d := &sniffer{}
	s := proxied(t, p, func(c *gocql.ClusterConfig) { c.Dialer = d })
	for i := range 10 {
		if err := s.Query("INSERT INTO "+table+" (k, v) VALUES (?, ?)", "k", "v").Exec(); err == nil {
			t.Fatalf("statement %d went through, want it cut", i)
		}
	}
	if p.Stats().CutNow == 0 {
		t.Fatal("nothing was cut: the test did not test anything")
	}
	control, controlCut, cut := d.report()
	if control != 1 || controlCut {
		t.Fatalf("%d connections sent REGISTER (want 1); the proxy closed it: %v", control, controlCut)
	}
	if cut == 0 {
		t.Error("no pool connection was closed by the proxy")
	}
	t.Logf("%d pool connections cut; stats %+v", cut, p.Stats())
}

// sniffer is a gocql Dialer whose connections note the opcodes of the
// frames they write, and whether the proxy closed them.
type sniffer struct {
	mu    sync.Mutex
	conns []*sniffed
}

type sniffed struct {
	net.Conn
	mu       sync.Mutex
	out      []byte // written, not yet parsed
	register bool
	closed   bool // a read failed before the driver closed it
	ours     bool // the driver closed it
}

func (d *sniffer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	sc := &sniffed{Conn: c}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns = append(d.conns, sc)
	return sc, nil
}

// report returns how many connections sent REGISTER, whether the proxy
// closed one of them, and how many others it closed.
func (d *sniffer) report() (control int, controlCut bool, cut int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.mu.Lock()
		switch {
		case c.register:
			control++
			controlCut = controlCut || c.closed
		case c.closed:
			cut++
		}
		c.mu.Unlock()
	}
	return control, controlCut, cut
}

func (c *sniffed) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, b...)
	for len(c.out) >= 9 {
		n := 9 + int(binary.BigEndian.Uint32(c.out[5:9]))
		if len(c.out) < n {
			break
		}
		if c.out[4] == 0x0B {
			c.register = true
		}
		c.out = c.out[n:]
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *sniffed) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.mu.Lock()
		if !c.ours {
			c.closed = true
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *sniffed) Close() error {
	c.mu.Lock()
	c.ours = true
	c.mu.Unlock()
	return c.Conn.Close()
}

// TestCQLHeld: a Decide that blocks holds its request only; another
// statement on the same connection (one per host) goes through meanwhile,
// and the held one completes when released. Closing the proxy under the
// driver's open connections leaves no goroutine of it behind.
func TestCQLHeld(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	var p *faultproxy.Proxy
	var hold atomic.Bool
	p, admin, table := cqlProxy(t, faultproxy.Config{Decide: func(r faultproxy.Request) faultproxy.Fault {
		if r.Opcode == 0x0A && hold.CompareAndSwap(true, false) {
			close(held)
			select {
			case <-release:
			case <-p.Done():
			}
		}
		return faultproxy.Pass
	}})
	s := proxied(t, p, func(c *gocql.ClusterConfig) { c.NumConns = 1 })
	insert := "INSERT INTO " + table + " (k, v) VALUES (?, ?)"
	if err := s.Query(insert, "warm-up", "x").Exec(); err != nil {
		t.Fatal(err)
	}
	hold.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.Query(insert, "held", "x").Exec() }()
	<-held
	if err := s.Query(insert, "other", "x").Exec(); err != nil {
		t.Fatalf("a statement behind the held one: %v", err)
	}
	if stored(t, admin, table, "held") {
		t.Fatal("the held request reached the server")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the held statement, released: %v", err)
	}
	if !stored(t, admin, table, "held") {
		t.Error("the released statement was not written")
	}
	p.Close() // with the driver's connections open
	noGoroutines(t)
}

// TestCQLRefusesV5: a driver forced to protocol v5 cannot connect; one
// that probes versions (ProtoVersion 0) falls back to v4 by itself and
// works. The refusal is a protocol error that says v4 is required, in the
// client's own version (the one drivers read when they probe).
func TestCQLRefusesV5(t *testing.T) {
	p, _, table := cqlProxy(t, faultproxy.Config{})
	cluster := gocql.NewCluster(p.Addr())
	cluster.ProtoVersion = 5
	cluster.Timeout = 30 * time.Second
	s, err := cluster.CreateSession()
	if err == nil {
		s.Close()
		t.Fatal("a v5 session connected through the proxy")
	}
	t.Logf("forced to v5, gocql says: %v", err)
	if p.Stats().Refused == 0 {
		t.Error("no connection refused")
	}
	probing := proxied(t, p, func(c *gocql.ClusterConfig) { c.ProtoVersion = 0 })
	if err := probing.Query("INSERT INTO "+table+" (k, v) VALUES (?, ?)", "k", "v").Exec(); err != nil {
		t.Fatalf("a probing session: %v", err)
	}

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x05, 0, 0, 7, 0x05, 0, 0, 0, 0}) // OPTIONS, v5, stream 7
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	answer, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(answer) < 15 || answer[0] != 0x85 || answer[3] != 7 || answer[4] != 0 || binary.BigEndian.Uint32(answer[9:]) != 0x000A {
		t.Fatalf("got % x, want a v5 ERROR frame on stream 7 with code 0x000A", answer)
	}
	if msg := string(answer[15:]); !strings.Contains(msg, "protocol v4") {
		t.Errorf("the refusal says %q, want it to say protocol v4 is required", msg)
	}
}
