package main

import (
	"context"
	"flag"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

var benchLeads = flag.Int("lost.leads", 100_000, "leads in the stream for BenchmarkFindLostLeads")

// seedLeads writes n leads straight through the event store, each a
// capture, an activity and a score, in atomic batches from four writers;
// every hundredth lead's last event is stamped without an owner. It
// returns how many are broken.
func (w *world) seedLeads(tb testing.TB, n int) int {
	tb.Helper()
	const writers, perBatch = 4, 333 // 999 writes a batch
	ctx := context.Background()
	now := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for g := range writers {
		wg.Go(func() {
			var batch []eventstore.Write
			for i := g; i < n; i += writers {
				id := uuid.NewString()
				var st lifecycle.State
				for j, p := range []proto.Message{
					&eventv1.LeadCaptured{SealedPersonal: make([]byte, 120), Profile: &eventv1.Profile{Country: "GB", Employees: 200, EmailDomain: "example.com"}},
					&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: webinar},
					&eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: 20, Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_NONE},
				} {
					cmd := []lifecycle.Command{{Name: lifecycle.Capture}, {Name: lifecycle.RecordActivity}, {Name: lifecycle.Score, Score: 20}}[j]
					d, err := lifecycle.Decide(st, cmd, lifecycle.DefaultPolicy(), now)
					if err != nil {
						errs[g] = err
						return
					}
					st = lifecycle.Fold(st, d...)
					ev, err := envelope.NewEvent(id, p, envelope.Meta{Actor: intakeActor, CorrelationID: id}, now)
					if err != nil {
						errs[g] = err
						return
					}
					ev.Lifecycle = lifecycle.ToProto(st)
					if j == 2 && i%100 == 0 {
						ev.Lifecycle.Owner = nil
					}
					batch = append(batch, eventstore.Write{Subject: eventstore.LeadSubject(id), Unchecked: j > 0, Event: ev})
				}
				if len(batch) >= 3*perBatch {
					if _, err := w.store.Commit(ctx, batch...); err != nil {
						errs[g] = err
						return
					}
					batch = batch[:0]
				}
			}
			if len(batch) > 0 {
				if _, err := w.store.Commit(ctx, batch...); err != nil {
					errs[g] = err
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return (n + 99) / 100
}

// BenchmarkFindLostLeads measures the no-lost-lead check over gRPC with
// -lost.leads leads (100,000 by default) in the stream, 1% of them
// broken. It reports the first call after a start separately: that one
// waits for the index to read every lead.
//
//	go test -run '^$' -bench FindLostLeads -benchtime 20x ./nurture/
func BenchmarkFindLostLeads(b *testing.B) {
	w := newWorld(b)
	start := time.Now()
	broken := w.seedLeads(b, *benchLeads)
	b.Logf("seeded %d leads (%d broken) in %v", *benchLeads, broken, time.Since(start))
	start = time.Now()
	s := w.start(b)
	ctx := context.Background()
	first, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	r, err := s.client.FindLostLeads(first, &nurturev1.FindLostLeadsRequest{})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("first call after start (index reads every lead): %v", time.Since(start))
	if int(r.GetLeadsChecked()) != *benchLeads || int(r.GetTotalLost()) != broken {
		b.Fatalf("checked %d leads, %d lost; want %d and %d", r.GetLeadsChecked(), r.GetTotalLost(), *benchLeads, broken)
	}
	// Measure in a steady state: the group has read the seeded backlog.
	start = time.Now()
	w.settle(b, group)
	b.Logf("nurture group drained the backlog %v later", time.Since(start))
	var server time.Duration
	b.ResetTimer()
	for b.Loop() {
		r, err := s.client.FindLostLeads(ctx, &nurturev1.FindLostLeadsRequest{})
		if err != nil {
			b.Fatal(err)
		}
		server += r.GetTook().AsDuration()
	}
	b.StopTimer()
	b.ReportMetric(float64(server.Microseconds())/1000/float64(b.N), "server-ms/op")
	// A replica starting on a stream that is read already: its index reads
	// the last event of every lead before the first answer.
	s.stop()
	start = time.Now()
	s = w.start(b)
	if _, err := s.client.FindLostLeads(first, &nurturev1.FindLostLeadsRequest{}); err != nil {
		b.Fatal(err)
	}
	b.Logf("first call after a restart in a steady state: %v", time.Since(start))
	b.ReportMetric(float64(*benchLeads), "leads")
}
