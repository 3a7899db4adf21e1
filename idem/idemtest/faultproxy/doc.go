// Package faultproxy is a loopback TCP proxy that loses responses, cuts
// connections and delays traffic on purpose, per request, so that a test
// can prove what a client and its store do when the network fails between
// a write and its answer. It reads Cassandra's native protocol (v4 frames)
// and HTTP/1.1, forwards every byte as it came (requests may be signed:
// nothing is rewritten), and stops by itself.
//
// # Faults
//
// Each faultable request gets one Fault:
//
//   - Pass: forwarded, and its response delivered.
//   - DropResponse: forwarded; its response is read and thrown away. The
//     server did receive the request, and may have applied it; the client
//     sees nothing and times out.
//   - CutAtResponse: forwarded; when its response arrives the proxy closes
//     the client's connection instead. The server received the request; the
//     client sees the connection close (every request in flight on it is
//     cut too).
//   - CutNow: the client's connection is closed at once and the request is
//     not forwarded: the server never sees it.
//   - Delay: forwarded; its response is delivered Config.DelayBy after it
//     arrives.
//   - DelayRequest: held for Config.DelayBy, then forwarded (so it may land
//     after the client gave up on it).
//   - DropRequest: never forwarded, and the connection is left open: the
//     server never sees the request, the client times out.
//
// The fault is chosen at random (Config.Drop, CutAtResponse, CutNow, Delay,
// DelayRequest and DropRequest are the probabilities), or by Config.Decide. SetFaults
// pauses and resumes injection; Stats counts the faults applied, so a test
// can check that what it meant to inject did happen.
//
// # Determinism
//
// The proxy numbers the faultable requests 1, 2, 3, ... (Request.Seq) in
// the order it reads them, across all connections. The random fault of
// request n is a pure function of the seed and n: the same seed gives the
// same sequence of decisions, request by request, in arrival order, whether
// or not faults were paused meanwhile (a request seen while faults are off
// passes and uses up its number). Which request is the n-th depends on the
// client: with one connection and one request at a time it is the client's
// own order, so a whole run replays; with concurrent clients, the order in
// which requests reach the proxy is up to the scheduler. Config.Trace
// reports each decision, so a failing run can say which request got what.
// Config.Seed 0 picks a random seed; Proxy.Seed returns it for the log.
//
// # Cassandra (CQL)
//
// The proxy reads native protocol v4 frames (a 9-byte header: version,
// flags, stream, opcode, body length) and matches each response to its
// request by connection and stream id. Faultable requests are QUERY,
// PREPARE, EXECUTE and BATCH, except:
//
//   - every frame on a connection that has sent REGISTER: that is the
//     driver's control connection (topology and schema events), which is
//     never touched;
//   - the driver's own statements: QUERY and PREPARE reading the system
//     keyspaces (system.local, system.peers, system_schema...) and USE. A
//     compressed frame cannot be read, so use no compression (gocql's
//     default) for this exemption to hold.
//
// PREPARE is faultable because the network does not spare it: a lost
// prepare answer leaves the driver with a timeout for a statement that was
// never executed, and the driver prepares again after the server forgets a
// statement (an UNPREPARED error, then PREPARE and EXECUTE once more).
// A Decide that must fault only executions looks at Request.Opcode.
//
// Protocol v5 wraps frames in checksummed segments the proxy cannot read,
// so it requires v4. A connection whose first frame is not v4 gets a
// protocol error saying so ("Invalid or unsupported protocol version ...:
// faultproxy reads native protocol v4 frames only"), in the client's own
// version, and is closed. A driver that probes versions then tries v4 (gocql
// does with ProtoVersion 0); one forced to v5 fails to connect (gocql:
// "unsupported protocol version 5 for host ..."). Stats.Refused counts
// these. Connect with protocol 4 and
// translate every node's address to the proxy, or the driver will find the
// node's own address in system.peers and go around it:
//
//	p, err := faultproxy.Start(faultproxy.Config{Target: "127.0.0.1:9042", Protocol: faultproxy.CQL, Drop: 0.05})
//	...
//	defer p.Close()
//	cluster := gocql.NewCluster(p.Addr())
//	cluster.ProtoVersion = 4
//	cluster.Timeout = 2 * time.Second // a dropped response costs this much
//	cluster.AddressTranslator = gocql.AddressTranslatorFunc(func(net.IP, int) (net.IP, int) {
//		return net.IPv4(127, 0, 0, 1), p.Port()
//	})
//
// With several nodes, start one proxy per node and translate each node's
// address to its own proxy. Responses on other streams go on while one is
// held (Delay, or a Decide that blocks): CQL connections are multiplexed.
//
// # HTTP
//
// Plain HTTP/1.1 (no TLS): requests and responses with a Content-Length,
// chunked bodies (trailers included), keep-alive and pipelining, interim
// 1xx responses (100 Continue passes through). Every request is faultable;
// responses are matched to requests in order, as HTTP/1.1 has it, so a
// held request or response holds those behind it on the same connection.
// Upgrades (101, CONNECT) are not supported: the connection is closed.
//
// A dropped response or request silences its connection: the server's side
// is closed and the client's side stays open with nothing more delivered,
// until the client hangs up (its timeout) or the proxy closes. A response
// that came later on that connection can thus never be taken for the
// dropped one; requests the client pipelined behind it may have reached the
// server (behind a dropped response), and are lost with it.
//
// For the AWS SDK, point the endpoint at the proxy; the signature covers
// the Host header, which the proxy leaves as the client wrote it:
//
//	p, err := faultproxy.Start(faultproxy.Config{Target: "127.0.0.1:5000", Protocol: faultproxy.HTTP, Drop: 0.05})
//	...
//	client := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
//		o.BaseEndpoint = aws.String("http://" + p.Addr())
//	})
//
// and give the HTTP client a response timeout (http.Transport's
// ResponseHeaderTimeout, or a context deadline), since a dropped response
// is answered by nothing.
//
// # Lifetime
//
// The proxy listens on loopback only, and closes itself (listener and every
// connection, both sides) Config.Lifetime after Start, 10 minutes unless
// set, so a forgotten proxy cannot outlive its test run by much. Close is
// idempotent and returns once every goroutine the proxy started has ended;
// Done is closed when the proxy closes, however it closes.
package faultproxy
