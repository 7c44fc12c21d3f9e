package dashboard

import (
	"slices"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// SignOff is the scoring model's sign-off state, folded from the events
// of model.scoring: a version scores nobody until marketing and sales
// have each approved it (qualification's rule; the projector only reads).
type SignOff struct {
	// Active is the version that scores, 0 while none does.
	Active uint32 `json:"active"`
	// Versions, newest first.
	Versions []ModelVersion `json:"versions"`
}

// ModelVersion is one proposed version and where its sign-off stands.
type ModelVersion struct {
	Version     uint32    `json:"version"`
	Description string    `json:"description"`
	Threshold   int32     `json:"threshold"`
	Rules       int       `json:"rules"`
	ProposedBy  string    `json:"proposed_by"`
	ProposedAt  time.Time `json:"proposed_at"`
	// State is proposed (awaiting sign-off), active or superseded (once
	// active, or proposed before the active version).
	State       string     `json:"state"`
	Approvals   []Approval `json:"approvals"`
	ActivatedAt time.Time  `json:"activated_at,omitzero"`
	// Rescore: every open lead re-scored under it (started, done, and
	// the lead events the re-score read).
	RescoreStarted bool   `json:"rescore_started"`
	RescoreDone    bool   `json:"rescore_done"`
	RescoreTotal   uint64 `json:"rescore_total"`
}

// Approval is one team's sign-off.
type Approval struct {
	Team string    `json:"team"`
	By   string    `json:"by"`
	At   time.Time `json:"at"`
}

// FoldSignOff reads the events of model.scoring in order. It is pure.
func FoldSignOff(recs []eventstore.Record) SignOff {
	var s SignOff
	byVersion := map[uint32]int{}
	get := func(n uint32) *ModelVersion {
		if i, ok := byVersion[n]; ok {
			return &s.Versions[i]
		}
		return nil
	}
	for _, r := range recs {
		at := r.Event.GetOccurredAt().AsTime()
		switch p := envelope.Payload(r.Event).(type) {
		case *eventv1.ScoringModelProposed:
			m := p.GetModel()
			byVersion[m.GetVersion()] = len(s.Versions)
			s.Versions = append(s.Versions, ModelVersion{Version: m.GetVersion(), Description: m.GetDescription(),
				Threshold: m.GetThreshold(), Rules: len(m.GetFitRules()) + len(m.GetEngagementRules()) + len(m.GetDisqualifyRules()),
				ProposedBy: actor(p.GetProposedBy()), ProposedAt: at, State: "proposed", Approvals: []Approval{}}) // [] in JSON, not null: the page reads it as a list
		case *eventv1.ScoringModelApproved:
			if v := get(p.GetVersion()); v != nil {
				v.Approvals = append(v.Approvals, Approval{Team: word(p.GetApprover().GetTeam()), By: p.GetApprover().GetId(), At: at})
			}
		case *eventv1.ScoringModelActivated:
			if v := get(s.Active); v != nil {
				v.State = "superseded"
			}
			if v := get(p.GetVersion()); v != nil {
				v.State, v.ActivatedAt = "active", at
				s.Active = p.GetVersion()
			}
			// A proposal older than the active version can no longer be
			// approved (qualification refuses it): not awaiting sign-off.
			// A newer one's approvals so far no longer count: they were
			// given against the rules this activation replaced.
			for i := range s.Versions {
				switch v := &s.Versions[i]; {
				case v.State == "proposed" && v.Version < p.GetVersion():
					v.State = "superseded"
				case v.State == "proposed":
					v.Approvals = []Approval{}
				}
			}
		case *eventv1.ScoringModelRescoreStarted:
			if v := get(p.GetVersion()); v != nil {
				v.RescoreStarted, v.RescoreTotal = true, p.GetTotal()
			}
		case *eventv1.ScoringModelRescoreCompleted:
			if v := get(p.GetVersion()); v != nil {
				v.RescoreDone = true
			}
		}
	}
	slices.Reverse(s.Versions)
	if s.Versions == nil {
		s.Versions = []ModelVersion{}
	}
	return s
}
