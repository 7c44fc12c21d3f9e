package eventstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// What a keyed command's record costs (go test -run '^$' -bench
// KeyedAppend ./eventstore/), on one server and on a three-node cluster
// with three replicas: one event appended alone ("plain"), two events in
// one atomic commit ("pair", what the record would cost inside the
// commit), an event then its record ("keyed"), and a repeat's answer
// from the record ("repeat").
func BenchmarkKeyedAppend(b *testing.B) {
	b.Run("one-server", func(b *testing.B) {
		keyedAppend(b, testenv.StartNATS(b).JS, 1)
	})
	b.Run("three-nodes", func(b *testing.B) {
		keyedAppend(b, testenv.StartCluster(b, 3).JS, 3)
	})
}

func keyedAppend(b *testing.B, js jetstream.JetStream, replicas int) {
	ctx := context.Background()
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{Replicas: replicas}); err != nil {
		b.Fatal(err)
	}
	s := eventstore.New(js, "")
	for _, mode := range []string{"plain", "pair", "keyed"} {
		b.Run(mode, func(b *testing.B) {
			lead := uuid.NewString()
			subj := eventstore.LeadSubject(lead)
			var v uint64
			var err error
			for i := 0; b.Loop(); i++ {
				ev := activity(b, lead, "x")
				switch mode {
				case "keyed":
					v, err = s.AppendKeyed(ctx, "bench", subj, v, "r"+strconv.Itoa(i), "ActivityRecorded", ev)
				case "pair":
					v, err = s.Append(ctx, subj, v, ev, activity(b, lead, "y"))
				default:
					v, err = s.Append(ctx, subj, v, ev)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("repeat", func(b *testing.B) {
		lead := uuid.NewString()
		subj := eventstore.LeadSubject(lead)
		if _, err := s.AppendKeyed(ctx, "bench", subj, 0, "r", "ActivityRecorded", activity(b, lead, "x")); err != nil {
			b.Fatal(err)
		}
		// The record is sent without waiting for it.
		for range 100 {
			if _, _, found, err := s.Keyed(ctx, "bench", subj, "r"); err == nil && found {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for b.Loop() {
			if _, _, found, err := s.Keyed(ctx, "bench", subj, "r"); err != nil || !found {
				b.Fatal(found, err)
			}
		}
	})
}
