package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

var (
	benchLeads   = flag.Int("route.leads", 5_000, "BenchmarkRouting/backlog: qualified leads waiting when the service starts")
	benchRate    = flag.Int("route.rate", 500, "BenchmarkRouting/latency: leads qualified per second")
	benchSeconds = flag.Int("route.seconds", 5, "BenchmarkRouting/latency: how long leads are qualified at that rate")
)

// BenchmarkRouting measures the lead consumer's routing: "backlog" is a
// fresh service draining N qualified leads (decisions/s: each a pool
// turn, a capacity reservation and a LeadAssigned, all with optimistic
// concurrency); "latency" qualifies leads at a steady rate while the
// service runs and reports LeadQualified → LeadAssigned, from the
// server's own timestamps of the two events (no client clocks).
//
//	go test -run '^$' -bench Routing -benchtime 1x ./handoff/ [-args -route.leads 20000 -route.rate 1000]
func BenchmarkRouting(b *testing.B) {
	b.Run("backlog", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			w := newWorld(b)
			s := w.start(b)
			benchSetup(b, s.client)
			s.stop()
			ids := w.seedQualified(b, *benchLeads)
			b.StartTimer()
			start := time.Now()
			w.start(b)
			w.settle(b)
			d := time.Since(start)
			b.StopTimer()
			if n := w.countAssigned(b, ids); n != len(ids) {
				b.Fatalf("%d of %d leads assigned", n, len(ids))
			}
			b.ReportMetric(float64(len(ids))/d.Seconds(), "decisions/s")
		}
	})
	b.Run("latency", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			w := newWorld(b)
			s := w.start(b)
			benchSetup(b, s.client)
			b.StartTimer()
			ids, raw := w.qualifyAtRate(b, *benchRate, time.Duration(*benchSeconds)*time.Second)
			w.settle(b)
			b.StopTimer()
			var lat []time.Duration
			for _, id := range ids {
				recs, err := w.store.Load(context.Background(), eventstore.LeadSubject(id))
				if err != nil {
					b.Fatal(err)
				}
				var q, a time.Time
				for _, r := range recs {
					switch r.Event.GetPayload().(type) {
					case *eventv1.Event_LeadQualified:
						q = r.Time
					case *eventv1.Event_LeadAssigned:
						a = r.Time
					}
				}
				if a.IsZero() {
					b.Fatalf("lead %s not assigned", id)
				}
				lat = append(lat, a.Sub(q))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(len(ids))/float64(*benchSeconds), "leads/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			// The floor, same run: one append with an expected sequence,
			// as the writers made them.
			slices.Sort(raw)
			b.ReportMetric(float64(raw[len(raw)/2].Microseconds())/1000, "raw-append-p50-ms")
			b.ReportMetric(float64(raw[len(raw)*99/100].Microseconds())/1000, "raw-append-p99-ms")
		}
	})
}

// benchSetup is one team of 50 reps of capacity 500 in one pool, and a
// rule sending every DACH lead to it.
func benchSetup(b testing.TB, c handoffv1.HandoffServiceClient) {
	b.Helper()
	ctx := context.Background()
	if _, err := c.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "emea"}, ChangedBy: ops}); err != nil {
		b.Fatal(err)
	}
	pool := &eventv1.Pool{PoolId: "dach"}
	for i := range 50 {
		id := fmt.Sprintf("rep%02d", i)
		if _, err := c.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: id, TeamId: "emea", Capacity: 500, Active: true}, ChangedBy: ops}); err != nil {
			b.Fatal(err)
		}
		pool.Members = append(pool.Members, &eventv1.PoolMember{RepId: id, Weight: uint32(1 + i%3)})
	}
	if _, err := c.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: pool, ChangedBy: ops}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.SetRoutingRules(ctx, &handoffv1.SetRoutingRulesRequest{Rules: &eventv1.RoutingRules{
		Rules:         []*eventv1.RoutingRule{{RuleId: "dach", Segment: "smb", PoolId: "dach", When: &eventv1.RuleCriteria{CountryIn: []string{"DE"}}}},
		FallbackQueue: "sales-fallback"}, ChangedBy: ops}); err != nil {
		b.Fatal(err)
	}
}

// seedQualified writes n qualified DACH leads (captured, scored,
// qualified) in atomic batches, as intake and qualification would have.
func (w *world) seedQualified(b testing.TB, n int) []string {
	b.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	var batch []eventstore.Write
	flush := func() {
		if len(batch) > 0 {
			if _, err := w.store.Commit(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	for i := range ids {
		ids[i] = uuid.NewString()
		writes := qualifiedLead(b, ids[i])
		if len(batch)+len(writes) > eventstore.MaxBatch {
			flush()
		}
		batch = append(batch, writes...)
	}
	flush()
	return ids
}

func qualifiedLead(b testing.TB, id string) []eventstore.Write {
	var state lifecycle.State
	now := time.Now()
	var writes []eventstore.Write
	for _, step := range []struct {
		cmd     lifecycle.Command
		payload proto.Message
	}{
		{lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: dach(50)}},
		{lifecycle.Command{Name: lifecycle.Score, Score: 80}, &eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: 80, Threshold: 70}},
		{lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70}},
	} {
		ev, after, err := lifecycle.NewEvent(id, state, step.cmd, lifecycle.DefaultPolicy(), step.payload, envelope.Meta{Actor: intakeActor, CorrelationID: id}, now)
		if err != nil {
			b.Fatal(err)
		}
		state = after
		writes = append(writes, eventstore.Write{Subject: eventstore.LeadSubject(id), Unchecked: len(writes) > 0, Event: ev})
	}
	return writes
}

// qualifyAtRate writes qualified leads at rate per second for d, each
// lead's three events as single appends, from a few paced writers. It
// returns the leads and how long each append took.
func (w *world) qualifyAtRate(b testing.TB, rate int, d time.Duration) ([]string, []time.Duration) {
	b.Helper()
	const writers = 8
	var mu sync.Mutex
	var ids []string
	var raw []time.Duration
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			every := time.Duration(float64(time.Second) * writers / float64(rate))
			t := time.NewTicker(every)
			defer t.Stop()
			end := time.Now().Add(d)
			for time.Now().Before(end) {
				<-t.C
				id := uuid.NewString()
				var v uint64
				var took []time.Duration
				for _, wr := range qualifiedLead(b, id) {
					var err error
					start := time.Now()
					if v, err = w.store.Append(context.Background(), wr.Subject, v, wr.Event); err != nil {
						b.Error(err)
						return
					}
					took = append(took, time.Since(start))
				}
				mu.Lock()
				ids = append(ids, id)
				raw = append(raw, took...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ids, raw
}

func (w *world) countAssigned(b testing.TB, ids []string) int {
	b.Helper()
	n := 0
	for _, id := range ids {
		if len(ofType(w.events(b, id), "LeadAssigned")) == 1 {
			n++
		}
	}
	return n
}
