package eventstore_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// What a keyed command's record costs (go test -run '^$' -bench
// KeyedAppend ./eventstore/): one event appended alone ("plain"), two
// events in one atomic commit ("pair", what the record would cost inside
// the commit), an event then its record ("keyed"), and a repeat's answer
// from the record ("repeat").
func BenchmarkKeyedAppend(b *testing.B) {
	n := testenv.StartNATS(b)
	ctx := context.Background()
	if _, err := eventstore.EnsureStream(ctx, n.JS, eventstore.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	s := eventstore.New(n.JS, "")
	for _, mode := range []string{"plain", "pair", "keyed"} {
		name, keyed := mode, mode == "keyed"
		b.Run(name, func(b *testing.B) {
			lead := uuid.NewString()
			subj := eventstore.LeadSubject(lead)
			var v uint64
			var err error
			for i := range b.N {
				ev := activity(b, lead, "x")
				switch {
				case keyed:
					v, err = s.AppendKeyed(ctx, "bench", subj, v, "r"+strconv.Itoa(i), "ActivityRecorded", ev)
				case name == "pair":
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
		for range b.N {
			if _, _, found, err := s.Keyed(ctx, "bench", subj, "r"); err != nil || !found {
				b.Fatal(found, err)
			}
		}
	})
}
