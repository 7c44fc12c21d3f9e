package lifecycle_test

import (
	"strings"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

func TestProtoMapping(t *testing.T) {
	for s := lifecycle.StatusNew; s <= lifecycle.StatusErased; s++ {
		want := "LEAD_STATUS_" + s.String()
		if got := eventv1.LeadStatus(s).String(); got != want {
			t.Errorf("status %d: proto %s, want %s", s, got, want)
		}
	}
	for k := lifecycle.OwnerQueue; k <= lifecycle.OwnerProgram; k++ {
		want := "OWNER_KIND_" + strings.ToUpper(k.String())
		if got := eventv1.OwnerKind(k).String(); got != want {
			t.Errorf("owner kind %d: proto %s, want %s", k, got, want)
		}
	}
	in := lifecycle.State{
		Status:   lifecycle.StatusAccepted,
		Owner:    lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"},
		Deadline: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		Attempts: 2,
		Score:    71,
	}
	if out := lifecycle.FromProto(lifecycle.ToProto(in)); out != in {
		t.Fatalf("round trip: %+v, want %+v", out, in)
	}
	if out := lifecycle.FromProto(lifecycle.ToProto(lifecycle.State{})); out != (lifecycle.State{}) {
		t.Fatalf("zero round trip: %+v", out)
	}
}
