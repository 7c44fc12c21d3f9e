package main

import (
	"flag"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
)

var (
	benchTriggers = flag.Int("score.triggers", 20_000, "BenchmarkScoring: trigger events (captures and activities) in the backlog")
	benchLeads    = flag.Int("rescore.leads", 10_000, "BenchmarkRescore: leads to re-score")
)

// BenchmarkScoring measures the live consumer: a backlog of trigger
// events, a capture and three activities per lead, is scored by a fresh
// service under the default model, from its start until its durable has
// handled every event. "verdicts": webinar, pricing and email click, so
// most decision makers qualify and one lead in ten is at a competitor (a
// verdict is a second append); "scores-only": three email
// clicks and no competitors, so nobody crosses (one-event appends).
//
//	go test -run '^$' -bench Scoring -benchtime 1x ./qualification/ [-args -score.triggers 20000]
func BenchmarkScoring(b *testing.B) {
	for _, bc := range []struct {
		name    string
		profile func(int) *eventv1.Profile
		acts    []eventv1.ActivityType
	}{
		{"verdicts", variedProfile, []eventv1.ActivityType{webinar, pricing, click}},
		{"scores-only", noCompetitor, []eventv1.ActivityType{click, click, click}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				w := newWorld(b)
				s := w.start(b)
				v := activate(b, s.client, scoring.Default())
				rescored(b, s.client, v)
				s.stop()
				leads := *benchTriggers / 4
				w.seed(b, leads, bc.profile, func(int) []eventv1.ActivityType { return bc.acts })
				b.StartTimer()
				start := time.Now()
				w.start(b)
				w.settle(b)
				b.ReportMetric(float64(leads*4)/time.Since(start).Seconds(), "events/s")
			}
		})
	}
}

func noCompetitor(i int) *eventv1.Profile {
	p := variedProfile(i)
	p.EmailDomain = "open.example"
	return p
}

// BenchmarkRescore measures re-scoring on activation: N leads exist, a
// version is activated, and the re-score reads every lead's last event
// through its scan, loads the lead and appends its score; timed from the
// activation to the completion. "verdicts": a capture and up to four
// activities per lead, so about half the leads qualify or are disqualified
// (a second append); "scores-only": captures alone, no lead
// crosses (one-event appends).
//
//	go test -run '^$' -bench Rescore -benchtime 1x ./qualification/ [-args -rescore.leads 100000]
func BenchmarkRescore(b *testing.B) {
	for _, bc := range []struct {
		name    string
		profile func(int) *eventv1.Profile
		acts    func(int) []eventv1.ActivityType
	}{
		{"verdicts", variedProfile, variedActivities},
		{"scores-only", noCompetitor, func(int) []eventv1.ActivityType { return nil }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				w := newWorld(b)
				w.seed(b, *benchLeads, bc.profile, bc.acts)
				s := w.start(b)
				w.settle(b) // no model yet: the backlog is read and left unscored
				b.StartTimer()
				start := time.Now()
				v := activate(b, s.client, scoring.Default())
				p := rescoredWithin(b, s.client, v, 30*time.Minute)
				d := time.Since(start)
				b.ReportMetric(d.Seconds(), "s/rescore")
				b.ReportMetric(float64(*benchLeads)/d.Seconds(), "leads/s")
				b.ReportMetric(float64(p.GetTotal())/d.Seconds(), "events/s")
			}
		})
	}
}
