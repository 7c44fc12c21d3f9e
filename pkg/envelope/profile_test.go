package envelope_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Forms keep nothing until a form comes through a merged lead; an unmerge
// takes back that lead's forms and those of the leads merged into it
// (given_back_via), and the profile is built again from the rest, in
// order.
func TestFormsGiveBackWhatCameThroughTheLead(t *testing.T) {
	var f envelope.Forms
	own := &eventv1.Profile{Country: "DE", Employees: 10}
	f.Add(nil, "", own)
	if f.Layers != nil {
		t.Fatalf("kept %v for a lead no merged lead's form reached", f.Layers)
	}
	profile := own
	for _, form := range []struct {
		via string
		p   *eventv1.Profile
	}{
		{"a", &eventv1.Profile{Country: "US", Industry: "software"}},
		{"", &eventv1.Profile{Employees: 20}},
		{"c", &eventv1.Profile{Country: "FR", EmailDomain: "c.example"}},
		{"b", &eventv1.Profile{Industry: "retail"}},
	} {
		f.Add(profile, form.via, form.p)
		profile = envelope.MergeProfile(profile, form.p)
	}
	if _, ok := f.GiveBack(&eventv1.LeadUnmerged{AbsorbedLeadId: "x"}); ok {
		t.Fatal("an unmerge of another lead gave something back")
	}
	// a absorbed, and c merged into a: both go back with a.
	got, ok := f.GiveBack(&eventv1.LeadUnmerged{AbsorbedLeadId: "a", GivenBackVia: []string{"c"}})
	if want := (&eventv1.Profile{Country: "DE", Employees: 20, Industry: "retail"}); !ok || !proto.Equal(got, want) {
		t.Fatalf("after a's unmerge: %v (%v), want %v", got, ok, want)
	}
}
