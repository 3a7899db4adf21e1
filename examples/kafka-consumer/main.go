// Command kafka-consumer is an order-events consumer on a real Kafka
// topic, made effectively-once with idemkafka: every event is applied once
// although the producer re-sends two events at new offsets, a consumer
// dies after applying its events and before committing them, and a second
// consumer joins the group while the first is inside a handler.
//
// It creates a topic of its own (3 partitions, deleted at the end with its
// group), produces the events, runs the consumers, prints what happened
// and exits 1 if an event was applied other than once or the group's lag
// did not drain to 0:
//
//	go run ./examples/kafka-consumer                    # keys in the embedded store
//	go run ./examples/kafka-consumer -store=dynamodb    # or cassandra; see examples/internal/backend
//
// The broker is -brokers, by default IDEM_KAFKA_BROKERS (testenv/env.sh
// exports it while testenv's broker runs), else 127.0.0.1:9092.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/idemkit/idemkit/examples/internal/backend"
	"github.com/idemkit/idemkit/examples/internal/report"
)

func main() {
	kind := backend.Flag()
	brokers := flag.String("brokers", cmp.Or(os.Getenv("IDEM_KAFKA_BROKERS"), "127.0.0.1:9092"), "the Kafka bootstrap brokers, host:port, comma-separated")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, closeStore := backend.MustOpen(ctx, "kafka-consumer", *kind)
	defer closeStore()

	fmt.Printf("idemkit Kafka consumer demo on the %s store, brokers %s\n\n", *kind, *brokers)
	rep, err := Run(ctx, store, strings.Split(*brokers, ","))
	report.Finish("kafka-consumer", rep, err)
}
