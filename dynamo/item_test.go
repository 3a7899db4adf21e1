package dynamo

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/idemkit/idemkit/idem"
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
	// (exp <= now.Unix() is expired) and in idem.Item.Expired alike.
	exp := expiry(base.Add(300*time.Millisecond), time.Second)
	it := idem.Item{ExpiresAt: expiresAt(exp)}
	for _, now := range []time.Time{base, base.Add(1999 * time.Millisecond), base.Add(2 * time.Second), base.Add(2500 * time.Millisecond)} {
		cond := exp <= now.Unix()
		if cond != it.Expired(now) {
			t.Errorf("at %v: condition says expired=%v, Item.Expired says %v", now, cond, it.Expired(now))
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

func TestRefused(t *testing.T) {
	resp := func(code int) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: errors.New("api error")}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"condition failed (400)", resp(400), true},
		{"throttled (400)", fmt.Errorf("wrapped: %w", resp(400)), true},
		{"internal error (500)", resp(500), false},
		{"service unavailable (503)", resp(503), false},
		{"dial refused", &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, true},
		{"reset after send", &smithyhttp.RequestSendError{Err: &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}}, false},
		{"dns", &net.DNSError{Err: "no such host", IsNotFound: true}, true},
		{"timeout", errors.New("context deadline exceeded"), false},
	} {
		if got := refused(tc.err); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
