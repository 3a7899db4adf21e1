package dynamo

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

func TestExpiry(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name string
		now  time.Time
		ttl  time.Duration
		want int64
	}{
		{"no ttl", base, 0, 0},
		{"negative ttl", base, -time.Second, 0},
		{"whole seconds", base, 2 * time.Second, 1_700_000_002},
		{"rounds up", base.Add(300 * time.Millisecond), time.Second, 1_700_000_002},
		{"a nanosecond rounds up", base, time.Nanosecond, 1_700_000_001},
	} {
		if got := expiry(tc.now, tc.ttl); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
	// The item is live until now reaches the stored second, in the condition
	// (exp <= now.Unix() is expired) and in kernel.Expired alike.
	exp := expiry(base.Add(300*time.Millisecond), time.Second)
	it := idem.Item{ExpiresAt: expiresAt(exp)}
	for _, now := range []time.Time{base, base.Add(1999 * time.Millisecond), base.Add(2 * time.Second), base.Add(2500 * time.Millisecond)} {
		cond := exp <= now.Unix()
		if cond != kernel.Expired(it, now) {
			t.Errorf("at %v: condition says expired=%v, kernel.Expired says %v", now, cond, kernel.Expired(it, now))
		}
	}
}

func TestItemSize(t *testing.T) {
	s := &Store{cfg: config{pk: "pk", val: "val", ver: "ver", exp: "exp", tok: "tok"}}
	// pk + key, ver + 21, exp + 21, tok + 16, val + value.
	if got, want := s.itemSize("key", make([]byte, 10)), 2+3+3+21+3+21+3+16+3+10; got != want {
		t.Errorf("itemSize: got %d, want %d", got, want)
	}
	if got, want := s.itemSize("key", nil), 2+3+3+21+3+21+3+16; got != want {
		t.Errorf("itemSize of an empty value: got %d, want %d", got, want)
	}
	s.cfg.sk, s.cfg.partition = "sk", "part"
	if got, want := s.itemSize("key", nil), 2+4+2+3+3+21+3+21+3+16; got != want {
		t.Errorf("itemSize with a sort key: got %d, want %d", got, want)
	}
}

func TestDecode(t *testing.T) {
	s := &Store{cfg: config{pk: "pk", val: "val", ver: "ver", exp: "exp", tok: "tok"}}
	n := func(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
	good := map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "k"}, "ver": n("3"),
		"val": &types.AttributeValueMemberB{Value: []byte("v")}, "exp": n("1700000000"),
	}
	it, err := s.decode("k", good)
	if err != nil || it.Version != 3 || string(it.Value) != "v" || it.ExpiresAt.Unix() != 1_700_000_000 {
		t.Fatalf("decode: got %+v, %v", it, err)
	}
	it, err = s.decode("k", map[string]types.AttributeValue{"ver": n("1")})
	if err != nil || it.Value == nil || len(it.Value) != 0 || !it.ExpiresAt.IsZero() {
		t.Fatalf("decode of a minimal item: got %+v, %v; want an empty non-nil value and no expiry", it, err)
	}
	for name, m := range map[string]map[string]types.AttributeValue{
		"no version":        {},
		"version as string": {"ver": &types.AttributeValueMemberS{Value: "1"}},
		"version fraction":  {"ver": n("1.5")},
		"value as string":   {"ver": n("1"), "val": &types.AttributeValueMemberS{Value: "v"}},
		"expiry as string":  {"ver": n("1"), "exp": &types.AttributeValueMemberS{Value: "1"}},
		"expiry garbage":    {"ver": n("1"), "exp": n("soon")},
	} {
		if _, err := s.decode("k", m); !errors.Is(err, idem.ErrCorrupt) {
			t.Errorf("%s: got %v, want idem.ErrCorrupt", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("1", []byte("v"), "1700000000", true)
	f.Add("-1", []byte{}, "0", false)
	f.Add("9223372036854775808", []byte(nil), "1e3", true)
	s := &Store{cfg: config{pk: "pk", val: "val", ver: "ver", exp: "exp", tok: "tok"}}
	f.Fuzz(func(t *testing.T, ver string, val []byte, exp string, withExp bool) {
		m := map[string]types.AttributeValue{
			"ver": &types.AttributeValueMemberN{Value: ver},
			"val": &types.AttributeValueMemberB{Value: val},
		}
		if withExp {
			m["exp"] = &types.AttributeValueMemberN{Value: exp}
		}
		it, err := s.decode("k", m)
		if err != nil {
			if !errors.Is(err, idem.ErrCorrupt) {
				t.Fatalf("decode error %v does not match idem.ErrCorrupt", err)
			}
			return
		}
		// What decodes re-encodes to the same item.
		back, err := s.decode("k", s.encode("k", it.Value, it.Version, unix(it.ExpiresAt), newToken()))
		if err != nil || back.Version != it.Version || string(back.Value) != string(it.Value) || !back.ExpiresAt.Equal(it.ExpiresAt) {
			t.Fatalf("round trip: %+v became %+v (%v)", it, back, err)
		}
	})
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// TestAppliedNothing: which failed attempts the SDK may resend. Only a 4xx,
// a connection that never opened, or a request whose write failed on the
// socket prove that nothing was applied. The dial error of a refused
// connection arrives inside a response error with status 0, and a failed
// write of a body copied to the socket inside a "readfrom" error.
func TestAppliedNothing(t *testing.T) {
	resp := func(code int, err error) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: err}
	}
	send := func(err error) error {
		return resp(0, &smithyhttp.RequestSendError{Err: &url.Error{Op: "Post", URL: "http://127.0.0.1:4566/", Err: err}})
	}
	api := errors.New("api error")
	write := &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	for _, tc := range []struct {
		name   string
		err    error
		traced bool // net/http's trace hooks ran
		conns  int  // connections the request got
		want   bool
	}{
		{"condition failed (400)", resp(400, api), false, 0, true},
		{"throttled (400), wrapped", fmt.Errorf("wrapped: %w", resp(400, api)), true, 1, true},
		{"internal error (500)", resp(500, api), true, 1, false},
		{"service unavailable (503), untraced", resp(503, api), false, 0, false},
		{"connection refused", send(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true, 0, true},
		{"connection refused, untraced", send(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), false, 0, true},
		{"dns", send(&net.DNSError{Err: "no such host", IsNotFound: true}), false, 0, true},
		{"no connection (TLS handshake failed)", send(errors.New("tls: handshake failure")), true, 0, true},
		{"request write failed", send(write), true, 1, true},
		{"body write failed", send(&net.OpError{Op: "readfrom", Net: "tcp", Err: write}), true, 1, true},
		{"connection broken while writing", send(fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", write)), true, 1, true},
		{"response lost after the request was written", send(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true, 1, false},
		{"response lost, untraced", send(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), false, 0, false},
		{"server closed the connection after the request", send(io.EOF), true, 1, false},
		{"body error, not the socket", send(&net.OpError{Op: "readfrom", Net: "tcp", Err: errors.New("body failed")}), true, 1, false},
		{"200 with an unreadable body", resp(200, &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}), true, 1, false},
		{"joined errors", errors.Join(errors.New("other"), send(write)), true, 1, true},
		{"timeout, untraced", errors.New("context deadline exceeded"), false, 0, false},
	} {
		w := wireTrace{traced: tc.traced, conns: tc.conns}
		if got := w.appliedNothing(tc.err); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
