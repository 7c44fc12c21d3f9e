package app

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// A survivor is routed by its own person's answers again once an unmerge
// takes back what the absorbed lead's person answered while merged.
func TestUnmergedSurvivorIsRoutedByItsOwnAnswers(t *testing.T) {
	var recs []eventstore.Record
	add := func(p proto.Message) {
		ev, err := envelope.NewEvent("s", p, envelope.Meta{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, eventstore.Record{Seq: uint64(len(recs) + 1), Event: ev})
	}
	add(&eventv1.LeadCaptured{Profile: &eventv1.Profile{Country: "DE", Employees: 50, Industry: "software"}})
	add(&eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"})
	add(&eventv1.LeadResubmitted{MergedFrom: "a", Profile: &eventv1.Profile{Country: "US", Employees: 900}})
	add(&eventv1.LeadResubmitted{Profile: &eventv1.Profile{Industry: "retail"}})
	if p := foldLead("s", recs).routingLead().Profile; p.GetCountry() != "US" || p.GetEmployees() != 900 {
		t.Fatalf("while merged: %v, want the latest form's US, 900", p)
	}
	add(&eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"})
	if p := foldLead("s", recs).routingLead().Profile; p.GetCountry() != "DE" || p.GetEmployees() != 50 || p.GetIndustry() != "retail" {
		t.Fatalf("after the unmerge: %v, want its own DE, 50, retail", p)
	}
}
