package eventstore_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// What a keyed command's record costs: one event appended alone, against
// the same event with its record in one atomic commit (go test -run '^$'
// -bench KeyedAppend ./eventstore/), and what a repeat's answer costs.
func BenchmarkKeyedAppend(b *testing.B) {
	n := testenv.StartNATS(b)
	ctx := context.Background()
	if _, err := eventstore.EnsureStream(ctx, n.JS, eventstore.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	s := eventstore.New(n.JS, "")
	for _, keyed := range []bool{false, true} {
		name := "plain"
		if keyed {
			name = "keyed"
		}
		b.Run(name, func(b *testing.B) {
			lead := uuid.NewString()
			subj := eventstore.LeadSubject(lead)
			var v uint64
			var err error
			for i := range b.N {
				ev := activity(b, lead, "x")
				if keyed {
					v, err = s.AppendKeyed(ctx, "bench", subj, v, "r"+strconv.Itoa(i), "ActivityRecorded", ev)
				} else {
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
