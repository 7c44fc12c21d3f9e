package consume_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
)

var errUnknownEvent = errors.New("unknown event type")

// A service reads the lead stream with one durable; events of one lead arrive
// in order, different leads in parallel.
func ExampleRun() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	err = consume.Run(ctx, js, consume.Config{
		Stream:         "LEADS",
		Durable:        "handoff",
		FilterSubjects: []string{"lead.>"},
	}, func(ctx context.Context, m consume.Msg) error {
		switch m.Header.Get("Leadflow-Event-Type") {
		case "LeadQualified":
			return nil // route the lead; an error here is retried, then dead-lettered
		default:
			// Retrying will not help: dead-letter it at once.
			return consume.Permanent(fmt.Errorf("%w at %d", errUnknownEvent, m.Seq))
		}
	})
	if err != nil {
		log.Fatal(err)
	}
}

// The ops CLI lists a durable's dead letters and re-drives one once the
// cause is fixed.
func ExampleRedrive() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	dls, err := consume.DeadLetters(ctx, js, consume.DefaultDeadLetterStream, "handoff")
	if err != nil {
		log.Fatal(err)
	}
	for _, dl := range dls {
		fmt.Printf("%d %s seq %d after %d attempts: %s\n", dl.Seq, dl.Subject, dl.StreamSeq, dl.Attempts, dl.Error)
	}
	if len(dls) > 0 {
		err := consume.Redrive(ctx, js, consume.DefaultDeadLetterStream, "handoff", dls[0].Seq)
		if errors.Is(err, consume.ErrNotFound) {
			fmt.Println("already re-driven")
		} else if err != nil {
			log.Fatal(err)
		}
	}
}
