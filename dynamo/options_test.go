package dynamo_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/dynamo"
)

func TestNew(t *testing.T) {
	c := dynamodb.New(dynamodb.Options{Region: "us-east-1"})
	long := string(make([]byte, 256))
	tests := []struct {
		name   string
		client dynamo.Client
		table  string
		opts   []dynamo.Option
		ok     bool
	}{
		{"defaults", c, "t", nil, true},
		{"every option", c, "t", []dynamo.Option{
			dynamo.WithKeyAttribute("PK"), dynamo.WithSortKey("SK", "idem#svc"),
			dynamo.WithValueAttribute("data"), dynamo.WithVersionAttribute("v"),
			dynamo.WithExpiryAttribute("ttl"), dynamo.WithTokenAttribute("wt"), dynamo.WithConsistentRead(false),
		}, true},
		{"nil client", nil, "t", nil, false},
		{"empty table", c, "", nil, false},
		{"nil option", c, "t", []dynamo.Option{nil}, false},
		{"empty key attribute", c, "t", []dynamo.Option{dynamo.WithKeyAttribute("")}, false},
		{"empty value attribute", c, "t", []dynamo.Option{dynamo.WithValueAttribute("")}, false},
		{"empty version attribute", c, "t", []dynamo.Option{dynamo.WithVersionAttribute("")}, false},
		{"empty expiry attribute", c, "t", []dynamo.Option{dynamo.WithExpiryAttribute("")}, false},
		{"attribute name too long", c, "t", []dynamo.Option{dynamo.WithValueAttribute(long)}, false},
		{"value named like the key", c, "t", []dynamo.Option{dynamo.WithValueAttribute("pk")}, false},
		{"empty token attribute", c, "t", []dynamo.Option{dynamo.WithTokenAttribute("")}, false},
		{"token named like the value", c, "t", []dynamo.Option{dynamo.WithTokenAttribute("val")}, false},
		{"expiry named like the version", c, "t", []dynamo.Option{dynamo.WithExpiryAttribute("ver")}, false},
		{"sort key named like the partition key", c, "t", []dynamo.Option{dynamo.WithSortKey("pk", "p")}, false},
		{"empty sort key name", c, "t", []dynamo.Option{dynamo.WithSortKey("", "p")}, false},
		{"empty partition value", c, "t", []dynamo.Option{dynamo.WithSortKey("sk", "")}, false},
		{"partition value too long", c, "t", []dynamo.Option{dynamo.WithSortKey("sk", string(make([]byte, dynamo.MaxPartitionKeyBytes+1)))}, false},
		{"nil clock", c, "t", []dynamo.Option{dynamo.WithClock(nil)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := dynamo.New(tc.client, tc.table, tc.opts...)
			if tc.ok && (err != nil || s == nil) {
				t.Fatalf("got %v, want a Store", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("got a Store, want an error")
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}
