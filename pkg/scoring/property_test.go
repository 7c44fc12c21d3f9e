package scoring_test

import (
	"flag"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
)

var seed = flag.Uint64("model.seed", 0, "seed for TestProperties; 0 picks one from the clock")

// TestProperties scores random leads under random valid models and checks:
// the score is deterministic, the reasons add up to the parts, no lead
// passes the model's maximum, and decay never makes a rule worth more (in
// size) as time goes on. A failure logs the seed; rerun with -model.seed.
func TestProperties(t *testing.T) {
	s0 := *seed
	if s0 == 0 {
		s0 = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d", s0)
	r := rand.New(rand.NewPCG(s0, 0))
	const cases = 2000
	valid := 0
	for i := range cases {
		m := randomModel(r)
		if vs := scoring.Validate(m); len(vs) > 0 {
			continue // the generator may pick an unreachable threshold
		}
		valid++
		f := randomFacts(r)
		now := t0.Add(time.Duration(r.Int64N(int64(200 * day))))
		a, b := scoring.Score(m, f, now), scoring.Score(m, f, now)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d case %d: not deterministic:\n%+v\n%+v", s0, i, a, b)
		}
		fit, eng := 0, 0
		for _, x := range a.Reasons {
			switch x.Part {
			case eventv1.ScorePart_SCORE_PART_FIT:
				fit += x.Points
			case eventv1.ScorePart_SCORE_PART_ENGAGEMENT:
				eng += x.Points
			default:
				t.Fatalf("seed %d case %d: reason without a part: %+v", s0, i, x)
			}
		}
		if fit != a.Fit || eng != a.Engagement || a.Total != fit+eng {
			t.Fatalf("seed %d case %d: reasons sum to %d+%d, result says %d+%d=%d", s0, i, fit, eng, a.Fit, a.Engagement, a.Total)
		}
		if maxFit, maxEng := scoring.MaxScore(m); a.Fit > maxFit || a.Engagement > maxEng {
			t.Fatalf("seed %d case %d: %d+%d beyond the maximum %d+%d", s0, i, a.Fit, a.Engagement, maxFit, maxEng)
		}
		later := scoring.Score(m, f, now.Add(time.Duration(r.Int64N(int64(90*day)))))
		for _, x := range later.Reasons {
			if x.Part != eventv1.ScorePart_SCORE_PART_ENGAGEMENT {
				continue
			}
			before := 0
			for _, y := range a.Reasons {
				if y.RuleID == x.RuleID {
					before = y.Points
				}
			}
			if abs(x.Points) > abs(before) || x.Points*before < 0 {
				t.Fatalf("seed %d case %d: rule %s grew from %d to %d as time went on", s0, i, x.RuleID, before, x.Points)
			}
		}
	}
	// About 9 in 10 models are valid; far fewer means the properties were
	// barely checked.
	if valid < cases/2 {
		t.Fatalf("seed %d: only %d of %d random models were valid", s0, valid, cases)
	}
}

func abs(n int) int { return max(n, -n) }

var activityTypes = []eventv1.ActivityType{webinar, pricing, unsub, eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK, eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}

func randomModel(r *rand.Rand) scoring.Model {
	m := scoring.Model{ID: scoring.ID}
	for i := range r.IntN(5) {
		m.Fit = append(m.Fit, scoring.FitRule{ID: "fit" + string(rune('a'+i)), Points: r.IntN(201) - 100 | 1,
			When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority(1 + r.IntN(6))}}})
	}
	for i := range 1 + r.IntN(5) {
		p := r.IntN(101) - 50 | 1
		m.Engagement = append(m.Engagement, scoring.EngagementRule{ID: "eng" + string(rune('a'+i)),
			Activity: activityTypes[r.IntN(len(activityTypes))], Points: p, Cap: abs(p) * (1 + r.IntN(4)),
			HalfLife: time.Duration(1+r.IntN(60)) * day})
	}
	fit, eng := scoring.MaxScore(m)
	m.Threshold = 1 + r.IntN(max(fit+eng, 1))
	return m
}

func randomFacts(r *rand.Rand) scoring.Facts {
	f := scoring.Facts{Profile: scoring.Profile{Seniority: eventv1.Seniority(r.IntN(7))}}
	for range r.IntN(12) {
		f.Activities = append(f.Activities, scoring.Activity{Type: activityTypes[r.IntN(len(activityTypes))],
			At: t0.Add(time.Duration(r.Int64N(int64(120*day))) - 20*day)})
	}
	return f
}
