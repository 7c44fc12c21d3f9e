package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

var benchLeads = flag.Int("projector.leads", 5000, "leads generated for BenchmarkProjector (6 events each)")

// BenchmarkProjector measures, in one run against the same embedded
// JetStream and PostgreSQL, the live projection draining a backlog and a
// rebuild, each beside its floors (a raw ordered-consumer read of the
// same events and pgx CopyFrom of as many rows), and the p99 of the
// campaign report and the lead detail with the data loaded:
//
//	go test -run '^$' -bench Projector -benchtime 1x ./projector/ -projector.leads 100000
func BenchmarkProjector(b *testing.B) {
	for range b.N {
		w := newWorld(b)
		ctx := context.Background()
		leads, events := generate(b, w, *benchLeads)

		raw := rawRead(b, w, events)
		copyRate := copyFrom(b, w.dsn, events)

		drain := consumeFloor(b, w, events)

		start := time.Now()
		s := w.start(b)
		w.projectedWithin(b, w.dsn, time.Hour)
		live := float64(events) / time.Since(start).Seconds()

		start = time.Now()
		if _, err := s.client.StartRebuild(ctx, &projectorv1.StartRebuildRequest{}); err != nil {
			b.Fatal(err)
		}
		for {
			st, err := s.client.GetProjectionStatus(ctx, &projectorv1.GetProjectionStatusRequest{})
			if err != nil {
				b.Fatal(err)
			}
			if st.GetRebuild().GetDone() {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		rebuild := float64(events) / time.Since(start).Seconds()

		report := p99(b, 50, func() error {
			_, err := s.client.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR})
			return err
		})
		i := 0
		detail := p99(b, 500, func() error {
			i++
			_, err := s.client.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: leads[(i*7919)%len(leads)]})
			return err
		})
		floor := min(raw, copyRate)
		b.Logf("%d leads, %d events", len(leads), events)
		b.Logf("raw ordered-consumer read %.0f events/s; pgx CopyFrom %.0f rows/s; pkg/consume group, no-op handler %.0f events/s", raw, copyRate, drain)
		b.Logf("live projection %.0f events/s (%.3f of the lower floor); rebuild %.0f events/s (%.3f)", live, live/floor, rebuild, rebuild/floor)
		b.Logf("campaign report p99 %v; lead detail p99 %v", report, detail)
		b.ReportMetric(live, "live-events/s")
		b.ReportMetric(rebuild, "rebuild-events/s")
		b.ReportMetric(rebuild/floor, "rebuild/floor")
	}
}

// generate writes n leads of six events each (capture with one of 20
// campaigns, activity, MQL, assignment, acceptance, opportunity; every
// third won), round by round with asynchronous publishes, each event
// stamped with its lead's version as the event store does.
func generate(b *testing.B, w *world, n int) ([]string, int) {
	b.Helper()
	ids := make([]string, n)
	states := make([]lifecycle.State, n)
	versions := make([]uint64, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	for i := range 20 {
		w.other(b, eventstore.CampaignSubject(fmt.Sprintf("c%d", i)), 0, &eventv1.CampaignCostRecorded{CampaignId: fmt.Sprintf("c%d", i),
			CostId: "k", Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 100000}})
	}
	rep := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}
	round := func(i int) (lifecycle.Command, proto.Message) {
		c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
		switch i {
		case 0:
			return c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "web-form"},
				Profile: &eventv1.Profile{EmailDomain: "bench.example", Country: "DE", Employees: 200}}
		case 1:
			return c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{ActivityId: "a", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}
		case 2:
			return c(lifecycle.Qualify), &eventv1.LeadQualified{Score: 80, Threshold: 70}
		case 3:
			return lifecycle.Command{Name: lifecycle.Assign, Owner: rep}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "mid"}
		case 4:
			return c(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann"}
		}
		return c(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "o", Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 500000}}
	}
	events := 0
	now := time.Now()
	for r := range 6 {
		const chunk = 2000 // below the client's limit of unacknowledged async publishes
		for lo := 0; lo < n; lo += chunk {
			hi := min(lo+chunk, n)
			futures := make([]jetstream.PubAckFuture, hi-lo)
			for i := lo; i < hi; i++ {
				id := ids[i]
				cmd, payload := round(r)
				if r == 0 {
					payload.(*eventv1.LeadCaptured).Attribution.CampaignId = fmt.Sprintf("c%d", i%20)
				}
				ev, after, err := lifecycle.NewEvent(id, states[i], cmd, lifecycle.DefaultPolicy(), payload, envelope.Meta{}, now)
				if err != nil {
					b.Fatal(err)
				}
				ev.OccurredAt = timestamppb.New(now.Add(time.Duration(r) * time.Hour))
				ev.VersionBefore = versions[i]
				states[i] = after
				data, err := proto.Marshal(ev)
				if err != nil {
					b.Fatal(err)
				}
				m := nats.NewMsg(eventstore.LeadSubject(id))
				m.Header.Set(eventstore.HeaderType, ev.GetEventType())
				m.Header.Set(eventstore.HeaderEventID, ev.GetEventId())
				m.Data = data
				if futures[i-lo], err = w.nats.JS.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(versions[i])); err != nil {
					b.Fatal(err)
				}
			}
			for i, f := range futures {
				select {
				case ack := <-f.Ok():
					versions[lo+i] = ack.Sequence
				case err := <-f.Err():
					b.Fatal(err)
				case <-time.After(30 * time.Second):
					b.Fatal("no ack")
				}
			}
		}
		events += n
		w.mu.Lock()
		for i, id := range ids {
			w.last[eventstore.LeadSubject(id)] = versions[i]
		}
		w.mu.Unlock()
	}
	return ids, events + 20
}

// rawRead is the floor of reading: an ordered consumer over every lead
// event, decoding each.
func rawRead(b *testing.B, w *world, events int) float64 {
	// How the server's filtering costs: the rebuild reads unfiltered and
	// drops what it does not project. (Several wildcard filters, as
	// lead.> plus campaign.>, measured about 5,000/s here: too slow to
	// run on a large stream.)
	b.Logf("ordered read filtered to lead.>: %.0f events/s", rawReadF(b, w, events, []string{eventstore.LeadSubjects}))
	return rawReadF(b, w, events, nil)
}

func rawReadF(b *testing.B, w *world, events int, filter []string) float64 {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	if filter != nil && len(filter) == 1 {
		events -= 20
	}
	cons, err := w.nats.JS.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: filter})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4000))
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	for n := 0; n < events; n++ {
		m, err := it.Next(jetstream.NextMaxWait(5 * time.Second))
		if errors.Is(err, nats.ErrTimeout) {
			b.Fatalf("read %d of %d", n, events)
		}
		if err != nil {
			b.Fatal(err)
		}
		if _, err := eventstore.DecodeEvent(m.Data()); err != nil {
			b.Fatal(err)
		}
	}
	return float64(events) / time.Since(start).Seconds()
}

// copyFrom is the floor of writing: pgx CopyFrom of as many lead-sized
// rows into a scratch table.
func copyFrom(b *testing.B, dsn string, rows int) float64 {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE copy_floor (lead_id text, version bigint, status int, source text, campaign text,
		captured_at timestamptz, state jsonb)`); err != nil {
		b.Fatal(err)
	}
	state := []byte(`{"id":"x","version":1,"status":5,"source":"web-form","first_campaign":"c1","stages":[{"seq":1,"status":1}]}`)
	now := time.Now()
	start := time.Now()
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"copy_floor"}, []string{"lead_id", "version", "status", "source", "campaign", "captured_at", "state"},
		pgx.CopyFromSlice(rows, func(i int) ([]any, error) {
			return []any{uuid.NewString(), int64(i), int32(5), "web-form", "c1", now, state}, nil
		}))
	if err != nil || int(n) != rows {
		b.Fatal(n, err)
	}
	rate := float64(rows) / time.Since(start).Seconds()
	if _, err := conn.Exec(ctx, `DROP TABLE copy_floor`); err != nil {
		b.Fatal(err)
	}
	return rate
}

func p99(b *testing.B, n int, f func() error) time.Duration {
	b.Helper()
	d := make([]time.Duration, n)
	for i := range d {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		d[i] = time.Since(start)
	}
	slices.Sort(d)
	return d[n*99/100]
}

// consumeFloor is the floor of the live path: a pkg/consume group over
// the lead partitions whose handler does nothing.
func consumeFloor(b *testing.B, w *world, events int) float64 {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	done := make(chan struct{})
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = consume.Run(ctx, w.nats.JS, consume.Config{Stream: stream, Group: "floor", Partitions: eventstore.Partitions,
			Filter: eventstore.PartitionSubjects, Key: eventstore.LeadID, Workers: 64, Logger: slog.New(slog.DiscardHandler)},
			func(context.Context, consume.Msg) error {
				if n.Add(1) == int64(events-20) {
					close(done)
				}
				return nil
			})
	})
	<-done
	rate := float64(events-20) / time.Since(start).Seconds()
	cancel()
	wg.Wait()
	return rate
}
