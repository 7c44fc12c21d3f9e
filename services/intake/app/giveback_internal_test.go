package app

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// An unmerge names, and its replays mark, the events whose campaign
// touches move to the absorbed lead: the person's own, and a replay a
// newer unmerge wrote; not a replay an older unmerge wrote (naming no
// event), whose touch stayed with that unmerge's survivor. That one is
// still given back, unmarked.
func TestGiveBackMovesNoTouchAnOlderReplayLeft(t *testing.T) {
	a := &App{now: time.Now, policy: lifecycle.DefaultPolicy()}
	rec := func(id string, p *eventv1.ActivityRecorded) eventstore.Record {
		return eventstore.Record{Event: &eventv1.Event{EventId: id, OccurredAt: timestamppb.Now(), Payload: &eventv1.Event_ActivityRecorded{ActivityRecorded: p}}}
	}
	recs := []eventstore.Record{
		rec("sent", &eventv1.ActivityRecorded{CampaignId: "c1", MergedFrom: "x"}),
		rec("older", &eventv1.ActivityRecorded{CampaignId: "c2", MergedFrom: "x", GivenBackBy: "s"}),
		rec("newer", &eventv1.ActivityRecorded{CampaignId: "c3", MergedFrom: "x", GivenBackBy: "s", GivenBackEventId: "e"}),
		rec("other", &eventv1.ActivityRecorded{CampaignId: "c4", MergedFrom: "y"}), // another person's
	}
	state := lifecycle.State{Status: lifecycle.StatusNew, Owner: lifecycle.QueueQualification, Deadline: time.Now().Add(time.Hour), Cycle: 1}
	out, ids, err := a.giveBack(context.Background(), "x", "a", nil, "u", state, recs, envelope.Meta{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"sent", "newer"}; !slices.Equal(ids, want) {
		t.Errorf("named %v, want %v", ids, want)
	}
	var marks []string
	for _, ev := range out {
		marks = append(marks, ev.GetActivityRecorded().GetCampaignId()+":"+ev.GetActivityRecorded().GetGivenBackEventId())
	}
	if want := []string{"c1:sent", "c2:", "c3:newer"}; !slices.Equal(marks, want) {
		t.Errorf("replays %v, want %v", marks, want)
	}
}

// An unmerge is finished once its replays, consent changes among them,
// are all on the absorbed lead: counted, they match its count (a consent
// replay not counted kept it unfinished for good).
func TestAnUnmergeCountsItsConsentReplays(t *testing.T) {
	ev := func(p proto.Message) eventstore.Record {
		e, err := envelope.NewEvent("a", p, envelope.Meta{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return eventstore.Record{Event: e}
	}
	recs := []eventstore.Record{
		ev(&eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a", GivenBackCount: 2}),
		ev(&eventv1.ActivityRecorded{GivenBackBy: "s"}),
	}
	if got := unfinishedUnmerge(recs, "a"); got != "s" {
		t.Fatalf("one of two replays written: unfinished by %q, want s", got)
	}
	recs = append(recs, ev(&eventv1.ConsentChanged{GivenBackBy: "s"}))
	if got := unfinishedUnmerge(recs, "a"); got != "" {
		t.Errorf("both replays written, the second a consent change: unfinished by %q", got)
	}
}
