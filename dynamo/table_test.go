package dynamo_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

func TestCreateTable(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			c := srv.Client(t)
			ctx := ctxT(t)
			opts := []dynamo.Option{dynamo.WithKeyAttribute("PK"), dynamo.WithSortKey("SK", "idem"), dynamo.WithExpiryAttribute("ttl")}
			name := testenv.UniqueName(t, "idem")
			testenv.DeleteTableOnCleanup(t, c, name)
			if err := dynamo.CreateTable(ctx, c, name, opts...); err != nil {
				t.Fatalf("CreateTable: %v", err)
			}
			d, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Table.BillingModeSummary; got == nil || got.BillingMode != types.BillingModePayPerRequest {
				t.Errorf("billing mode: got %+v, want PAY_PER_REQUEST", got)
			}
			if d.Table.TableStatus != types.TableStatusActive {
				t.Errorf("status: got %s, want ACTIVE", d.Table.TableStatus)
			}
			ttl, err := c.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			if d := ttl.TimeToLiveDescription; d == nil || aws.ToString(d.AttributeName) != "ttl" ||
				(d.TimeToLiveStatus != types.TimeToLiveStatusEnabled && d.TimeToLiveStatus != types.TimeToLiveStatusEnabling) {
				t.Errorf("time to live: got %+v, want enabled on ttl", d)
			}

			// Again, with the same options: nothing to do.
			if err := dynamo.CreateTable(ctx, c, name, opts...); err != nil {
				t.Errorf("CreateTable on an existing compatible table: %v", err)
			}
			// The table works with a Store using the same options.
			s := mustStore(t, c, name, opts...)
			if _, err := s.PutIfAbsent(ctx, "k", []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}

			for _, tc := range []struct {
				name string
				opts []dynamo.Option
			}{
				{"no sort key", []dynamo.Option{dynamo.WithKeyAttribute("PK"), dynamo.WithExpiryAttribute("ttl")}},
				{"other partition key", []dynamo.Option{dynamo.WithKeyAttribute("id"), dynamo.WithSortKey("SK", "idem"), dynamo.WithExpiryAttribute("ttl")}},
				{"other sort key", []dynamo.Option{dynamo.WithKeyAttribute("PK"), dynamo.WithSortKey("sk", "idem"), dynamo.WithExpiryAttribute("ttl")}},
				{"other ttl attribute", []dynamo.Option{dynamo.WithKeyAttribute("PK"), dynamo.WithSortKey("SK", "idem")}},
			} {
				err := dynamo.CreateTable(ctx, c, name, tc.opts...)
				if !errors.Is(err, dynamo.ErrSchemaMismatch) {
					t.Errorf("%s: got %v, want dynamo.ErrSchemaMismatch", tc.name, err)
				} else {
					t.Logf("%s: %v", tc.name, err)
				}
			}
		})
	}
}

// TestCreateTableEnablesTTL: an existing table with the right key but time
// to live off gets it turned on.
func TestCreateTableEnablesTTL(t *testing.T) {
	srv := testenv.DynamoDBServers(t)[0]
	c := srv.Client(t)
	ctx := ctxT(t)
	name := testenv.UniqueName(t, "idem")
	testenv.DeleteTableOnCleanup(t, c, name)
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dynamo.CreateTable(ctx, c, name); err != nil {
		t.Fatalf("CreateTable on a table without time to live: %v", err)
	}
	ttl, err := c.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if d := ttl.TimeToLiveDescription; d == nil || aws.ToString(d.AttributeName) != dynamo.DefaultExpiryAttribute {
		t.Errorf("time to live: got %+v, want enabled on %s", d, dynamo.DefaultExpiryAttribute)
	}
}

func TestCreateTableBadArgs(t *testing.T) {
	ctx := context.Background()
	c := dynamodb.New(dynamodb.Options{Region: "us-east-1"})
	if err := dynamo.CreateTable(ctx, nil, "t"); err == nil {
		t.Error("nil client: got nil error")
	}
	if err := dynamo.CreateTable(ctx, c, ""); err == nil {
		t.Error("empty table: got nil error")
	}
	if err := dynamo.CreateTable(ctx, c, "t", dynamo.WithValueAttribute("pk")); err == nil {
		t.Error("clashing attribute names: got nil error")
	}
}

// TestDottedAttributeNames: attribute names with a dot are single
// attributes, never document paths. Conditions naming "idem.key" as the
// path idem → key found it missing, so every PutIfAbsent overwrote the item
// it should have refused.
func TestDottedAttributeNames(t *testing.T) {
	layouts := []struct {
		name string
		opts []dynamo.Option
	}{
		{"PartitionKey", []dynamo.Option{dynamo.WithKeyAttribute("idem.key")}},
		{"AllDotted", []dynamo.Option{
			dynamo.WithKeyAttribute("idem.pk"),
			dynamo.WithSortKey("idem.sk", "idem#dotted"),
			dynamo.WithValueAttribute("idem.val"),
			dynamo.WithVersionAttribute("idem.ver"),
			dynamo.WithExpiryAttribute("idem.exp"),
			dynamo.WithTokenAttribute("idem.tok"),
		}},
	}
	for _, srv := range testenv.DynamoDBServers(t) {
		for _, l := range layouts {
			t.Run(srv.Name+"/"+l.name, func(t *testing.T) {
				t.Parallel()
				c, name := table(t, srv, l.opts...)
				ctx := ctxT(t)
				// The clock starts two minutes behind and then catches up, so
				// that an item expires without waiting.
				var late atomic.Bool
				clock := func() time.Time {
					if late.Load() {
						return time.Now()
					}
					return time.Now().Add(-2 * time.Minute)
				}
				s := mustStore(t, c, name, append(slices.Clone(l.opts), dynamo.WithClock(clock))...)

				it, err := s.PutIfAbsent(ctx, "k", []byte("first"), 0)
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.PutIfAbsent(ctx, "k", []byte("second"), 0)
				var ce *idem.ConflictError
				if !errors.As(err, &ce) || !ce.Exists || string(ce.Current.Value) != "first" || ce.Current.Version != it.Version {
					t.Fatalf("PutIfAbsent on a live key: got %v, want a conflict carrying the first item", err)
				}
				if _, err := s.CompareAndSwap(ctx, "k", it.Version+1, []byte("x"), 0); !errors.Is(err, idem.ErrConflict) {
					t.Errorf("CompareAndSwap at a wrong version: got %v, want a conflict", err)
				}
				if it, err = s.CompareAndSwap(ctx, "k", it.Version, []byte("swapped"), time.Minute); err != nil {
					t.Fatalf("CompareAndSwap: %v", err)
				}
				if _, applied, err := s.Upsert(ctx, "k", []byte("low"), it.Version-1, 0); err != nil || applied {
					t.Errorf("Upsert below the stored version: applied %v, %v; want not applied", applied, err)
				}
				if err := s.CompareAndDelete(ctx, "k", it.Version-1); !errors.Is(err, idem.ErrConflict) {
					t.Errorf("CompareAndDelete at a wrong version: got %v, want a conflict", err)
				}
				// Once the item has expired, it is absent to every condition.
				late.Store(true)
				if err := s.CompareAndDelete(ctx, "k", it.Version); !errors.Is(err, idem.ErrConflict) {
					t.Errorf("CompareAndDelete of an expired item: got %v, want a conflict", err)
				}
				if it, err = s.PutIfAbsent(ctx, "k", []byte("again"), 0); err != nil {
					t.Fatalf("PutIfAbsent over an expired item: %v", err)
				}
				if err := s.CompareAndDelete(ctx, "k", it.Version); err != nil {
					t.Fatalf("CompareAndDelete: %v", err)
				}
				if _, err := s.Get(ctx, "k"); !errors.Is(err, idem.ErrNotFound) {
					t.Errorf("Get after the delete: got %v, want ErrNotFound", err)
				}
			})
		}
	}
}
