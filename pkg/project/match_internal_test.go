package project

import "testing"

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		filter, subject string
		want            bool
	}{
		{"lead.>", "lead.3.abc", true},
		{"lead.>", "lead", false},
		{"lead.>", "leads.3.abc", false},
		{"campaign.>", "campaign.c1", true},
		{"model.routing", "model.routing", true},
		{"model.routing", "model.routing-pool-p1", false},
		{"model.routing", "model.routing.x", false},
		{"lead.*.abc", "lead.3.abc", true},
		{"lead.*.abc", "lead.3.abd", false},
		{"lead.*", "lead.3.abc", false},
		{"claim.>", "lead.3.abc", false},
	} {
		if got := subjectMatches(c.filter, c.subject); got != c.want {
			t.Errorf("%q matches %q: %v, want %v", c.filter, c.subject, got, c.want)
		}
	}
}
