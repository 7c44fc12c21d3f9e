package adapters

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/whatif"
)

// Stream reads what the what-if needs straight from the event stream:
// the scoring model's history and the lead events. It writes nothing.
type Stream struct {
	js     jetstream.JetStream
	store  *eventstore.Store
	stream string
}

var (
	_ app.Models   = (*Stream)(nil)
	_ app.Replayer = (*Stream)(nil)
)

// NewStream returns the stream reads on the named stream.
func NewStream(js jetstream.JetStream, stream string) *Stream {
	return &Stream{js: js, store: eventstore.New(js, stream), stream: stream}
}

// Scoring implements app.Models: the events of model.scoring, folded.
func (s *Stream) Scoring(ctx context.Context) (whatif.Versions, error) {
	recs, err := s.store.Load(ctx, eventstore.ModelSubject("scoring"))
	if err != nil {
		return whatif.Versions{}, fmt.Errorf("scoring model history: %w", err)
	}
	var v whatif.Versions
	for _, r := range recs {
		v.Fold(r.Event)
	}
	if v.Models == nil {
		v.Fold(&eventv1.Event{})
	}
	return v, nil
}

// replayWait is how long the replay waits for a message before it asks
// the server whether any are left.
const replayWait = 200 * time.Millisecond

// Replay implements app.Replayer with an ordered consumer over the
// stream, handing on lead events only, from the first message stored at
// or after from less envelope.MaxClockAhead (the start when zero: an event
// that happened at from may have been stored that much earlier) to the
// stream's last sequence when it began. Progress counts every message
// read.
func (s *Stream) Replay(ctx context.Context, from time.Time, fn func(seq uint64, subject string, ev *eventv1.Event), progress func(read, total uint64)) error {
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	end := st.CachedInfo().State.LastSeq
	// Unfiltered: the server sends a whole stream several times faster than
	// it filters one with many subjects (see pkg/project's rebuild).
	cfg := jetstream.OrderedConsumerConfig{}
	if !from.IsZero() {
		start := from.Add(-envelope.MaxClockAhead)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := s.js.OrderedConsumer(ctx, s.stream, cfg)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer it.Stop()
	var read, total, last uint64 // last: the last stream sequence read
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := it.Next(jetstream.NextMaxWait(replayWait))
		if errors.Is(err, nats.ErrTimeout) {
			info, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			if eventstore.CaughtUp(info, last) {
				progress(read, read)
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		if md.Sequence.Stream > end {
			progress(read, read)
			return nil
		}
		read, last = read+1, md.Sequence.Stream
		if total == 0 {
			total = md.NumPending + 1
		}
		if typ := m.Headers().Get(eventstore.HeaderType); eventstore.LeadID(m.Subject()) != "" && typ != "" {
			// One that is not its lead's (envelope.Check) counts for nothing
			// in a what-if, as in every fold (docs/events.md).
			if ev, err := eventstore.DecodeLeadEvent(m.Subject(), typ, m.Data()); err == nil {
				fn(md.Sequence.Stream, m.Subject(), ev)
			}
		}
		if read%1000 == 0 || md.NumPending == 0 {
			progress(read, max(total, read))
		}
		if md.Sequence.Stream >= end || md.NumPending == 0 {
			progress(read, read)
			return nil
		}
	}
}
