package registry_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/registry"
)

func user(id string, team eventv1.Team) *eventv1.Actor {
	return &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: id, Team: team}
}

var (
	mia = user("mia", eventv1.Team_TEAM_MARKETING)
	mo  = user("mo", eventv1.Team_TEAM_MARKETING)
	sam = user("sam", eventv1.Team_TEAM_SALES)
)

// history folds payloads as consecutive model events.
func history(payloads ...proto.Message) *registry.Registry {
	r := &registry.Registry{}
	for i, p := range payloads {
		ev, err := envelope.NewEvent("", p, envelope.Meta{}, time.Unix(int64(i), 0))
		if err != nil {
			panic(err)
		}
		ev.OccurredAt = timestamppb.New(time.Unix(int64(i), 0))
		r.Apply(eventstore.Record{Seq: uint64(i + 1), Event: ev})
	}
	return r
}

func proposed(v uint32) *eventv1.ScoringModelProposed {
	m := scoring.Default()
	m.Version = v
	return &eventv1.ScoringModelProposed{Model: scoring.ToProto(m), ProposedBy: mia}
}

func TestApprove(t *testing.T) {
	activeV1 := history(proposed(1), &eventv1.ScoringModelApproved{Version: 1, Approver: mia},
		&eventv1.ScoringModelApproved{Version: 1, Approver: sam}, &eventv1.ScoringModelActivated{Version: 1}, proposed(2))
	tests := []struct {
		name     string
		reg      *registry.Registry
		version  uint32
		approver *eventv1.Actor
		want     registry.Decision
		field    string // of a *RefusedError
		unknown  bool
	}{
		{name: "first approval", reg: history(proposed(1)), version: 1, approver: mia, want: registry.Decision{}},
		{name: "second team activates", reg: history(proposed(1), &eventv1.ScoringModelApproved{Version: 1, Approver: mia}),
			version: 1, approver: sam, want: registry.Decision{Activate: true}},
		{name: "same person again is a replay", reg: history(proposed(1), &eventv1.ScoringModelApproved{Version: 1, Approver: mia}),
			version: 1, approver: mia, want: registry.Decision{Replay: true}},
		{name: "same team twice", reg: history(proposed(1), &eventv1.ScoringModelApproved{Version: 1, Approver: mia}),
			version: 1, approver: mo, field: "approver.team"},
		{name: "one person for both teams", reg: history(proposed(1), &eventv1.ScoringModelApproved{Version: 1, Approver: mia}),
			version: 1, approver: user("mia", eventv1.Team_TEAM_SALES), field: "approver.id"},
		{name: "unknown version", reg: history(proposed(1)), version: 2, approver: mia, unknown: true},
		{name: "a new version supersedes the active one", reg: history(proposed(1), &eventv1.ScoringModelApproved{Version: 1, Approver: mia},
			&eventv1.ScoringModelApproved{Version: 1, Approver: sam}, &eventv1.ScoringModelActivated{Version: 1}, proposed(2),
			&eventv1.ScoringModelApproved{Version: 2, Approver: sam}), version: 2, approver: mia, want: registry.Decision{Activate: true, Supersedes: 1}},
		{name: "an approval of an active version by a new team member", reg: activeV1, version: 1, approver: user("zoe", eventv1.Team_TEAM_SALES), field: "version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.reg.Approve(tt.version, tt.approver)
			var refused *registry.RefusedError
			switch {
			case tt.unknown:
				if !errors.Is(err, registry.ErrUnknownVersion) {
					t.Fatalf("got %v, want ErrUnknownVersion", err)
				}
			case tt.field != "":
				if !errors.As(err, &refused) || refused.Field != tt.field {
					t.Fatalf("got %v, want a refusal naming %s", err, tt.field)
				}
			case err != nil || d != tt.want:
				t.Fatalf("got %+v %v, want %+v", d, err, tt.want)
			}
		})
	}
	if s := activeV1.State(1); s != registry.Active {
		t.Errorf("v1 is %v", s)
	}
	if s := activeV1.State(2); s != registry.Proposed {
		t.Errorf("v2 is %v", s)
	}
}

// A snapshot handed out never changes when a later one is built from it.
func TestCloneIsolatesSnapshots(t *testing.T) {
	a := history(proposed(1), &eventv1.ScoringModelApproved{Version: 1, Approver: mia})
	b := a.Clone()
	ev, _ := envelope.NewEvent("", &eventv1.ScoringModelApproved{Version: 1, Approver: sam}, envelope.Meta{}, time.Now())
	b.Apply(eventstore.Record{Seq: 9, Event: ev})
	va, _ := a.Get(1)
	vb, _ := b.Get(1)
	if len(va.Approvals) != 1 || len(vb.Approvals) != 2 || a.Seq != 2 || b.Seq != 9 {
		t.Fatalf("snapshot changed: %d and %d approvals, seq %d and %d", len(va.Approvals), len(vb.Approvals), a.Seq, b.Seq)
	}
}

// A proposal older than the active version cannot be approved: v2 had
// marketing's sign-off, then v3 was proposed, signed off and activated; a
// late sales approval of v2 would put older rules back over v3's, on a
// sign-off given before v3 existed. To roll back, propose v2's model again.
func TestAProposalOlderThanTheActiveVersionIsStale(t *testing.T) {
	reg := history(proposed(1), &eventv1.ScoringModelApproved{Version: 1, Approver: mia},
		&eventv1.ScoringModelApproved{Version: 1, Approver: sam}, &eventv1.ScoringModelActivated{Version: 1},
		proposed(2), &eventv1.ScoringModelApproved{Version: 2, Approver: mia},
		proposed(3), &eventv1.ScoringModelApproved{Version: 3, Approver: mia}, &eventv1.ScoringModelApproved{Version: 3, Approver: sam},
		&eventv1.ScoringModelActivated{Version: 3, SupersededVersion: 1}, proposed(4))
	for _, who := range []*eventv1.Actor{sam, mo} {
		d, err := reg.Approve(2, who)
		var refused *registry.RefusedError
		if !errors.As(err, &refused) || refused.Field != "version" || !strings.Contains(refused.Reason, "version 3") {
			t.Fatalf("%s approves v2: %+v %v, want a refusal naming the active version 3", who.GetId(), d, err)
		}
	}
	if d, err := reg.Approve(2, mia); err != nil || !d.Replay {
		t.Fatalf("mia's repeated approval of v2: %+v %v, want a replay of the first answer", d, err)
	}
	for n, want := range map[uint32]registry.State{1: registry.Superseded, 2: registry.Stale, 3: registry.Active, 4: registry.Proposed} {
		if got := reg.State(n); got != want {
			t.Errorf("v%d is %v, want %v", n, got, want)
		}
	}
}

// A proposal newer than the active version counts only the approvals
// given since that version went live: v3, approved by marketing while v1
// was active, is not activated by sales' approval after v2 went live (it
// would undo v2 on a sign-off given against v1). Marketing approves
// again, and that activates it.
func TestApprovalsBeforeTheActiveVersionWentLiveDoNotCount(t *testing.T) {
	reg := history(proposed(1), &eventv1.ScoringModelApproved{Version: 1, Approver: mia},
		&eventv1.ScoringModelApproved{Version: 1, Approver: sam}, &eventv1.ScoringModelActivated{Version: 1},
		proposed(2), proposed(3), &eventv1.ScoringModelApproved{Version: 3, Approver: mia},
		&eventv1.ScoringModelApproved{Version: 2, Approver: mia}, &eventv1.ScoringModelApproved{Version: 2, Approver: sam},
		&eventv1.ScoringModelActivated{Version: 2, SupersededVersion: 1})
	if got := reg.Standing(3); len(got) != 0 {
		t.Fatalf("v3's standing approvals: %v, want none (mia's came before v2 went live)", got)
	}
	d, err := reg.Approve(3, sam)
	if err != nil || d.Activate || d.Replay {
		t.Fatalf("sam approves v3: %+v %v, want an approval that does not activate it", d, err)
	}
	ev, _ := envelope.NewEvent("", &eventv1.ScoringModelApproved{Version: 3, Approver: sam}, envelope.Meta{}, time.Now())
	reg.Apply(eventstore.Record{Seq: reg.Seq + 1, Event: ev})
	if d, err := reg.Approve(3, mia); err != nil || !d.Activate || d.Replay || d.Supersedes != 2 {
		t.Fatalf("mia approves v3 again: %+v %v, want it activated over v2", d, err)
	}
	// Recorded so, her retry answers as her call did, and v3's standing
	// approvals are the two that activated it.
	again, _ := envelope.NewEvent("", &eventv1.ScoringModelApproved{Version: 3, Approver: mia}, envelope.Meta{}, time.Now())
	act, _ := envelope.NewEvent("", &eventv1.ScoringModelActivated{Version: 3, SupersededVersion: 2}, envelope.Meta{CausationID: again.GetEventId()}, time.Now())
	reg.Apply(eventstore.Record{Seq: reg.Seq + 1, Event: again}, eventstore.Record{Seq: reg.Seq + 2, Event: act})
	if d, err := reg.Approve(3, mia); err != nil || !d.Replay || !d.Activate {
		t.Fatalf("mia's retry: %+v %v, want a replay of the approval that activated v3", d, err)
	}
	if got := reg.Standing(3); len(got) != 2 {
		t.Fatalf("v3's standing approvals once active: %v, want sam's and mia's second", got)
	}
}
