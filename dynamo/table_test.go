package dynamo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/dynamo"
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
