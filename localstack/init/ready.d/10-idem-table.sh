#!/bin/bash
# Creates the DynamoDB table idemkit's dynamo.Store expects, with its
# default options: partition key pk (String), on-demand billing, time to
# live on exp. The same table as dynamo.CreateTable(ctx, client, "idem");
# the definitions are the JSON files in localstack/dynamodb/. Safe to run
# again: an existing table and an enabled time to live are left alone.
set -euo pipefail
TABLE="${IDEM_TABLE:-idem}"
DIR=/idem/dynamodb

if ! awslocal dynamodb describe-table --table-name "$TABLE" >/dev/null 2>&1; then
	awslocal dynamodb create-table --cli-input-json "file://$DIR/table.json" --table-name "$TABLE" >/dev/null
fi
awslocal dynamodb wait table-exists --table-name "$TABLE"
if ! awslocal dynamodb describe-time-to-live --table-name "$TABLE" | grep -q ENABLED; then
	awslocal dynamodb update-time-to-live --cli-input-json "file://$DIR/ttl.json" --table-name "$TABLE" >/dev/null
fi
echo "idemkit: DynamoDB table $TABLE ready (partition key pk, time to live on exp)"
