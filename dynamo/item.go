package dynamo

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// keyAttrs returns the primary key of the item stored at key.
func (s *Store) keyAttrs(key string) map[string]types.AttributeValue {
	if s.cfg.sk == "" {
		return map[string]types.AttributeValue{s.cfg.pk: &types.AttributeValueMemberS{Value: key}}
	}
	return map[string]types.AttributeValue{
		s.cfg.pk: &types.AttributeValueMemberS{Value: s.cfg.partition},
		s.cfg.sk: &types.AttributeValueMemberS{Value: key},
	}
}

// encode returns the whole DynamoDB item for an idem item written with the
// write token tok. An empty value and a zero expiry are omitted, so an item
// that never expires has no time-to-live attribute.
func (s *Store) encode(key string, value []byte, version, exp int64, tok []byte) map[string]types.AttributeValue {
	m := s.keyAttrs(key)
	m[s.cfg.tok] = &types.AttributeValueMemberB{Value: tok}
	m[s.cfg.ver] = &types.AttributeValueMemberN{Value: strconv.FormatInt(version, 10)}
	if len(value) > 0 {
		m[s.cfg.val] = &types.AttributeValueMemberB{Value: bytes.Clone(value)}
	}
	if exp != 0 {
		m[s.cfg.exp] = &types.AttributeValueMemberN{Value: strconv.FormatInt(exp, 10)}
	}
	return m
}

// decode turns a DynamoDB item into an idem item. The key is the one asked
// for; the item's own key attribute is not re-checked.
func (s *Store) decode(key string, m map[string]types.AttributeValue) (idem.Item, error) {
	it := idem.Item{Key: key}
	ver, ok := m[s.cfg.ver].(*types.AttributeValueMemberN)
	if !ok {
		return it, kernel.Corrupt(key, fmt.Errorf("version attribute %q is missing or not a Number", s.cfg.ver))
	}
	v, err := strconv.ParseInt(ver.Value, 10, 64)
	if err != nil {
		return it, kernel.Corrupt(key, fmt.Errorf("version attribute %q: %w", s.cfg.ver, err))
	}
	it.Version = v
	switch val := m[s.cfg.val].(type) {
	case nil:
		it.Value = []byte{}
	case *types.AttributeValueMemberB:
		it.Value = val.Value
		if it.Value == nil {
			it.Value = []byte{}
		}
	default:
		return it, kernel.Corrupt(key, fmt.Errorf("value attribute %q is not Binary", s.cfg.val))
	}
	switch exp := m[s.cfg.exp].(type) {
	case nil:
	case *types.AttributeValueMemberN:
		sec, err := strconv.ParseInt(exp.Value, 10, 64)
		if err != nil {
			return it, kernel.Corrupt(key, fmt.Errorf("expiry attribute %q: %w", s.cfg.exp, err))
		}
		if sec != 0 {
			it.ExpiresAt = time.Unix(sec, 0)
		}
	default:
		return it, kernel.Corrupt(key, fmt.Errorf("expiry attribute %q is not a Number", s.cfg.exp))
	}
	return it, nil
}

// expiry returns the expiry in epoch seconds for an item written at now with
// ttl, rounded up to the next whole second; 0 means never.
func expiry(now time.Time, ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	t := now.Add(ttl)
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return sec
}

func expiresAt(exp int64) time.Time {
	if exp == 0 {
		return time.Time{}
	}
	return time.Unix(exp, 0)
}

// checkInput validates a key and value against idem's rules and DynamoDB's
// limits. value is nil for operations that write no value.
func (s *Store) checkInput(key string, value []byte, writes bool) error {
	if err := kernel.CheckKey(key); err != nil {
		return err
	}
	if s.cfg.sk == "" {
		if err := kernel.CheckSize(key, "key", len(key), MaxPartitionKeyBytes); err != nil {
			return err
		}
	} else if err := kernel.CheckSize(key, "key (the sort key)", len(key), MaxSortKeyBytes); err != nil {
		return err
	}
	if writes {
		return kernel.CheckSize(key, "item (value, key, version, expiry and their attribute names)", s.itemSize(key, value), MaxItemBytes)
	}
	return nil
}

// itemSize is the size DynamoDB counts for the item holding key and value,
// with the largest version and expiry numbers, so that it never
// underestimates: UTF-8 bytes of every attribute name, string and binary
// bytes (the write token included), and 21 bytes per number (38 digits at
// most: 1 byte per 2 digits plus 1).
func (s *Store) itemSize(key string, value []byte) int {
	const number = 21
	n := len(s.cfg.pk) + len(s.cfg.ver) + number + len(s.cfg.exp) + number + len(s.cfg.tok) + tokenBytes
	if s.cfg.sk == "" {
		n += len(key)
	} else {
		n += len(s.cfg.partition) + len(s.cfg.sk) + len(key)
	}
	if len(value) > 0 {
		n += len(s.cfg.val) + len(value)
	}
	return n
}

// tokenBytes is the length of a write token.
const tokenBytes = 16

// newToken returns a fresh write token.
func newToken() []byte {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("dynamo: reading random bytes: %v", err)) // crypto/rand never fails on supported platforms
	}
	return b
}

// writtenBy reports whether the DynamoDB item m was written with token tok:
// own-write recognition.
func (s *Store) writtenBy(m map[string]types.AttributeValue, tok []byte) bool {
	got, ok := m[s.cfg.tok].(*types.AttributeValueMemberB)
	return ok && bytes.Equal(got.Value, tok)
}
