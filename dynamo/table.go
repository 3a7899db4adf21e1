package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// CreateTable creates the table New expects: on-demand billing
// (PAY_PER_REQUEST), a String partition key (and a String sort key with
// WithSortKey), and time to live enabled on the expiry attribute so that
// DynamoDB eventually deletes expired items. It waits until the table is
// active, for at most five minutes or until ctx is done. Pass the same
// options as to New.
//
// CreateTable succeeds without changes when the table already exists with
// the same key schema and time to live on the same attribute (enabling time
// to live if it is off). A table with another key schema, or with time to
// live on another attribute, gives an error matching ErrSchemaMismatch that
// says what differs.
//
// Production tables are usually created by infrastructure as code; the
// package README (dynamo/README.md) has the equivalent CloudFormation and
// Terraform.
func CreateTable(ctx context.Context, client *dynamodb.Client, table string, opts ...Option) error {
	if client == nil {
		return errors.New("dynamo: CreateTable: nil client")
	}
	if table == "" {
		return errors.New("dynamo: CreateTable: empty table name")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	want := cfg.keySchema()
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: types.BillingModePayPerRequest,
	}
	for _, k := range want {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{
			AttributeName: aws.String(k.name), AttributeType: types.ScalarAttributeTypeS,
		})
		in.KeySchema = append(in.KeySchema, types.KeySchemaElement{
			AttributeName: aws.String(k.name), KeyType: k.kind,
		})
	}
	if _, err := client.CreateTable(ctx, in); err != nil {
		var inUse *types.ResourceInUseException
		if !errors.As(err, &inUse) {
			return fmt.Errorf("dynamo: CreateTable %s: %w", table, err)
		}
	}
	out, err := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Second, 10*time.Second
	}).WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 5*time.Minute)
	if err != nil {
		return fmt.Errorf("dynamo: CreateTable %s: waiting for the table to become active: %w", table, err)
	}
	if got := tableKeySchema(out.Table); !equalSchema(got, want) {
		return fmt.Errorf("dynamo: CreateTable %s: %w: the table's key is %s, the options want %s",
			table, ErrSchemaMismatch, formatSchema(got), formatSchema(want))
	}
	return enableTTL(ctx, client, table, cfg.exp)
}

// enableTTL turns time to live on for attr, or checks that it is on.
func enableTTL(ctx context.Context, client *dynamodb.Client, table, attr string) error {
	d, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("dynamo: CreateTable %s: describing time to live: %w", table, err)
	}
	if t := d.TimeToLiveDescription; t != nil {
		on := aws.ToString(t.AttributeName)
		switch t.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			if on == attr {
				return nil
			}
			return fmt.Errorf("dynamo: CreateTable %s: %w: time to live is on attribute %q, the options want %q",
				table, ErrSchemaMismatch, on, attr)
		case types.TimeToLiveStatusDisabling:
			return fmt.Errorf("dynamo: CreateTable %s: time to live on %q is being disabled; DynamoDB allows enabling it again only once that is done (up to an hour)", table, on)
		}
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attr), Enabled: aws.Bool(true),
		},
	})
	if err != nil {
		return fmt.Errorf("dynamo: CreateTable %s: enabling time to live on %q: %w", table, attr, err)
	}
	return nil
}

type keyAttr struct {
	name string
	kind types.KeyType
	typ  types.ScalarAttributeType
}

func (c config) keySchema() []keyAttr {
	ks := []keyAttr{{c.pk, types.KeyTypeHash, types.ScalarAttributeTypeS}}
	if c.sk != "" {
		ks = append(ks, keyAttr{c.sk, types.KeyTypeRange, types.ScalarAttributeTypeS})
	}
	return ks
}

func tableKeySchema(t *types.TableDescription) []keyAttr {
	if t == nil {
		return nil
	}
	typ := map[string]types.ScalarAttributeType{}
	for _, d := range t.AttributeDefinitions {
		typ[aws.ToString(d.AttributeName)] = d.AttributeType
	}
	var ks []keyAttr
	for _, k := range t.KeySchema {
		n := aws.ToString(k.AttributeName)
		ks = append(ks, keyAttr{n, k.KeyType, typ[n]})
	}
	return ks
}

func equalSchema(a, b []keyAttr) bool {
	if len(a) != len(b) {
		return false
	}
	find := func(ks []keyAttr, kind types.KeyType) (keyAttr, bool) {
		for _, k := range ks {
			if k.kind == kind {
				return k, true
			}
		}
		return keyAttr{}, false
	}
	for _, k := range b {
		if got, ok := find(a, k.kind); !ok || got != k {
			return false
		}
	}
	return true
}

func formatSchema(ks []keyAttr) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s %s (%s)", k.kind, k.name, k.typ)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
