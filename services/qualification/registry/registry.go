// Package registry is the history of the scoring model, folded from the
// events on subject model.scoring: every proposed version, its approvals,
// which version is active, and how far re-scoring under it has got. It
// also holds the sign-off rule: a version activates once one approver from
// marketing and one from sales have approved it.
//
// The package is pure. A Registry is a value: Apply builds on a Clone, so a
// snapshot handed to readers never changes under them.
package registry

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// State is where a version stands.
type State int

// The states of a version.
const (
	Proposed   State = iota + 1 // awaiting approval by both teams
	Active                      // the version that scores
	Superseded                  // was active, replaced by a later activation
	// Stale: never activated, and older than the active version, so it
	// can no longer be approved (its sign-offs predate the active rules).
	Stale
)

// Version is one proposed model and its sign-off.
type Version struct {
	Model          scoring.Model
	ProposedBy     *eventv1.Actor
	ProposedAt     time.Time
	IdempotencyKey string
	Approvals      []Approval
	// Activation is nil until the version activates.
	Activation *Activation
	Rescore    Rescore
}

// Approval is one team's sign-off, stored at stream sequence Seq.
type Approval struct {
	Approver *eventv1.Actor
	At       time.Time
	EventID  string
	Seq      uint64
}

// Activation is the event that made a version active. A re-score under the
// version is caused by it, scores as of its time, and covers the leads that
// existed at its stream sequence.
type Activation struct {
	EventID       string
	CorrelationID string
	// CausationID is the approval that completed the sign-off.
	CausationID string
	Seq         uint64
	At          time.Time
}

// Rescore is how far re-scoring every lead under a version has got.
type Rescore struct {
	Started   bool
	Total     uint64 // lead events read
	End       uint64 // the stream sequence the read ends at
	Completed bool
}

// Registry is the model's history. Versions[i] is version i+1.
type Registry struct {
	Versions []Version
	// Active is the active version, 0 while none is.
	Active uint32
	// Seq is the stream sequence of the last event applied: the version of
	// subject model.scoring to append at.
	Seq uint64
}

// Clone returns a copy that Apply may change without touching r.
func (r *Registry) Clone() *Registry {
	c := *r
	c.Versions = slices.Clone(r.Versions)
	return &c
}

// Apply folds model events into r, in stream order. Events of other kinds
// are skipped, so an older reader survives events added later.
func (r *Registry) Apply(recs ...eventstore.Record) {
	for _, rec := range recs {
		r.Seq = max(r.Seq, rec.Seq)
		ev := rec.Event
		at := ev.GetOccurredAt().AsTime()
		switch p := envelope.Payload(ev).(type) {
		case *eventv1.ScoringModelProposed:
			r.Versions = append(r.Versions, Version{Model: scoring.FromProto(p.GetModel()), ProposedBy: p.GetProposedBy(),
				ProposedAt: at, IdempotencyKey: ev.GetIdempotencyKey()})
		case *eventv1.ScoringModelApproved:
			if v := r.version(p.GetVersion()); v != nil {
				// Clip: never append into an array a snapshot shares.
				v.Approvals = append(slices.Clip(v.Approvals), Approval{Approver: p.GetApprover(), At: at, EventID: ev.GetEventId(), Seq: rec.Seq})
			}
		case *eventv1.ScoringModelActivated:
			if v := r.version(p.GetVersion()); v != nil {
				v.Activation = &Activation{EventID: ev.GetEventId(), CorrelationID: ev.GetCorrelationId(), CausationID: ev.GetCausationId(), Seq: rec.Seq, At: at}
				r.Active = p.GetVersion()
			}
		case *eventv1.ScoringModelRescoreStarted:
			if v := r.version(p.GetVersion()); v != nil {
				v.Rescore = Rescore{Started: true, Total: p.GetTotal(), End: p.GetEndSequence()}
			}
		case *eventv1.ScoringModelRescoreCompleted:
			if v := r.version(p.GetVersion()); v != nil {
				v.Rescore.Completed = true
			}
		}
	}
}

func (r *Registry) version(n uint32) *Version {
	if n == 0 || int(n) > len(r.Versions) {
		return nil
	}
	return &r.Versions[n-1]
}

// Get returns version n.
func (r *Registry) Get(n uint32) (Version, bool) {
	v := r.version(n)
	if v == nil {
		return Version{}, false
	}
	return *v, true
}

// State says where version n stands; 0 for an unknown version.
func (r *Registry) State(n uint32) State {
	v := r.version(n)
	switch {
	case v == nil:
		return 0
	case n == r.Active:
		return Active
	case v.Activation != nil:
		return Superseded
	case n < r.Active:
		return Stale
	}
	return Proposed
}

// Next is the number the next proposal gets.
func (r *Registry) Next() uint32 { return uint32(len(r.Versions)) + 1 }

// ByIdempotencyKey returns the version proposed with key.
func (r *Registry) ByIdempotencyKey(key string) (uint32, bool) {
	i := slices.IndexFunc(r.Versions, func(v Version) bool { return key != "" && v.IdempotencyKey == key })
	return uint32(i + 1), i >= 0
}

// ErrUnknownVersion is returned for a version that was never proposed.
var ErrUnknownVersion = errors.New("unknown model version")

// RefusedError is a well-formed approval that the version's sign-off state
// does not allow; Field names the request field at fault.
type RefusedError struct {
	Field  string
	Reason string
}

func (e *RefusedError) Error() string { return e.Field + ": " + e.Reason }

// Decision is what an approval does.
type Decision struct {
	// Replay: this approver already approved; nothing to record.
	// Activate then says whether that approval activated the version.
	Replay bool
	// Activate: this approval completes the sign-off.
	Activate bool
	// Supersedes is the version active before, 0 if none.
	Supersedes uint32
}

// SignOffTeams are the teams that must each approve a version once.
var SignOffTeams = []eventv1.Team{eventv1.Team_TEAM_MARKETING, eventv1.Team_TEAM_SALES}

// Approve decides an approval of version n by approver, whose team the
// caller has checked is one of SignOffTeams. It returns ErrUnknownVersion,
// or a *RefusedError when the version was activated already, is Stale, the
// team has approved it already, or the same person approved it for the
// other team.
func (r *Registry) Approve(n uint32, approver *eventv1.Actor) (Decision, error) {
	v := r.version(n)
	if v == nil {
		return Decision{}, fmt.Errorf("version %d: %w", n, ErrUnknownVersion)
	}
	approvals := r.Standing(n)
	// A retried approval still answers as it first did, activation
	// included.
	if i := slices.IndexFunc(approvals, func(a Approval) bool {
		return a.Approver.GetId() == approver.GetId() && a.Approver.GetTeam() == approver.GetTeam()
	}); i >= 0 {
		return Decision{Replay: true, Activate: v.Activation != nil && v.Activation.CausationID == approvals[i].EventID}, nil
	}
	if r.State(n) == Stale {
		// Activating it would put older rules back over newer signed-off
		// ones, on sign-offs that may predate them.
		return Decision{}, &RefusedError{Field: "version", Reason: fmt.Sprintf(
			"version %d was proposed before version %d, which is active: it can no longer be approved; to roll back to it, propose it again", n, r.Active)}
	}
	// Its state first: a version active already needs no approval, from
	// any team.
	if v.Activation != nil {
		return Decision{}, &RefusedError{Field: "version", Reason: fmt.Sprintf("version %d was activated already", n)}
	}
	for _, a := range approvals {
		same := a.Approver.GetId() == approver.GetId()
		switch {
		case a.Approver.GetTeam() == approver.GetTeam():
			return Decision{}, &RefusedError{Field: "approver.team", Reason: fmt.Sprintf(
				"%s already approved version %d (%s); the other team must approve it", teamName(approver.GetTeam()), n, a.Approver.GetId())}
		case same:
			return Decision{}, &RefusedError{Field: "approver.id", Reason: fmt.Sprintf(
				"%s approved version %d for %s already; one person cannot sign off for both teams", approver.GetId(), n, teamName(a.Approver.GetTeam()))}
		}
	}
	// Every approval so far is by another team, so this one completes the
	// sign-off when it is the last team missing.
	return Decision{Activate: len(approvals)+1 == len(SignOffTeams), Supersedes: r.Active}, nil
}

// Standing are the approvals of version n that count: those given since
// the activation before it (before its own, once it is active). One
// given before was given against other rules: counted, a proposal signed
// off before another version went live would undo that version on the
// other team's later word alone. A stale proposal's are all kept: it is
// refused anyway, and a retry still answers as it first did.
func (r *Registry) Standing(n uint32) []Approval {
	v := r.version(n)
	if v == nil {
		return nil
	}
	if v.Activation == nil && n < r.Active {
		return v.Approvals
	}
	var since uint64 // the last activation of another version before v's (or now)
	for i := range r.Versions {
		if a := r.Versions[i].Activation; a != nil && uint32(i+1) != n && (v.Activation == nil || a.Seq < v.Activation.Seq) {
			since = max(since, a.Seq)
		}
	}
	return slices.DeleteFunc(slices.Clone(v.Approvals), func(a Approval) bool { return a.Seq <= since })
}

func teamName(t eventv1.Team) string {
	switch t {
	case eventv1.Team_TEAM_MARKETING:
		return "MARKETING"
	case eventv1.Team_TEAM_SALES:
		return "SALES"
	}
	return t.String()
}
