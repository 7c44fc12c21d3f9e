package consume_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/natsserver"
)

// A service reads the lead stream as a group: every replica runs the same
// Run, the lead partitions are split between them, and one lead's events
// arrive in order. Here one lead's second event fails for good: it is
// dead-lettered, the lead is parked, and a re-drive (once the cause is
// fixed) handles it and then what waited behind it.
func Example() {
	dir, _ := os.MkdirTemp("", "consume-example-")
	defer os.RemoveAll(dir)
	srv, err := natsserver.Start(natsserver.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	nc, js, err := eventstore.Dial(srv.URL(), "example")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{}); err != nil {
		log.Fatal(err)
	}
	store := eventstore.New(js, "")
	lead := uuid.NewString()
	var version uint64
	for _, kind := range []eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT,
		eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK, eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST} {
		ev, _ := envelope.NewEvent(lead, &eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: kind}, envelope.Meta{}, time.Now())
		if version, err = store.Append(ctx, eventstore.LeadSubject(lead), version, ev); err != nil {
			log.Fatal(err)
		}
	}

	fixed := make(chan struct{})
	handled := make(chan string, 3)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consume.Run(runCtx, js, consume.Config{
			Stream:     eventstore.DefaultStream,
			Group:      "example",
			Partitions: eventstore.Partitions,
			Filter:     eventstore.PartitionSubjects,
			Key:        eventstore.LeadID,
			Logger:     slog.New(slog.DiscardHandler),
		}, func(_ context.Context, m consume.Msg) error {
			ev, err := eventstore.DecodeEvent(m.Data)
			if err != nil {
				return consume.Permanent(err) // retrying will not help
			}
			kind := ev.GetActivityRecorded().GetType().String()
			select {
			case <-fixed:
			default:
				if ev.GetActivityRecorded().GetType() == eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK {
					return consume.Permanent(errors.New("no handler for email clicks yet"))
				}
			}
			handled <- kind
			return nil
		})
	}()
	fmt.Println(<-handled)

	// The operator sees the parked lead, fixes the cause and re-drives it.
	var dls []consume.DeadLetter
	for len(dls) == 0 || len(dls[0].Parked) == 0 {
		time.Sleep(50 * time.Millisecond)
		if dls, err = consume.DeadLetters(ctx, js, consume.DefaultDeadLetterStream); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("dead: %s, parked behind it: %d\n", dls[0].Error, len(dls[0].Parked))
	close(fixed)
	if err := consume.Redrive(ctx, js, consume.DefaultDeadLetterStream, "example", lead, 0); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-handled)
	fmt.Println(<-handled)
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output:
	// ACTIVITY_TYPE_WEB_VISIT
	// dead: no handler for email clicks yet, parked behind it: 1
	// ACTIVITY_TYPE_EMAIL_CLICK
	// ACTIVITY_TYPE_DEMO_REQUEST
}
