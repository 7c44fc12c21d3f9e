package app_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/intake/adapters"
	"github.com/leadflow/leadflow/services/intake/app"
)

// interrupted is the real lead store that runs meanwhile once, right
// after the first load of one lead: another command landing between a
// command's read and its write.
type interrupted struct {
	*adapters.Leads
	lead      string
	meanwhile func()
	done      atomic.Bool
}

func (l *interrupted) Load(ctx context.Context, id string) ([]eventstore.Record, error) {
	recs, err := l.Leads.Load(ctx, id)
	if id == l.lead && l.done.CompareAndSwap(false, true) {
		l.meanwhile()
	}
	return recs, err
}

// twoApps is one intake, and a second one on the same stream and vault
// whose reads of lead are interrupted by meanwhile.
func twoApps(t *testing.T) (plain *app.App, racer func(lead string, meanwhile func()) *app.App) {
	t.Helper()
	f := newFixture(t)
	return f.app, func(lead string, meanwhile func()) *app.App {
		return app.New(&interrupted{Leads: adapters.NewLeads(f.store), lead: lead, meanwhile: meanwhile}, adapters.NewCampaigns(f.store), f.keys)
	}
}

func captured(t *testing.T, a *app.App, email string) string {
	t.Helper()
	r, err := a.CaptureLead(ctxT(t), capture(email, ""), envelope.Meta{CorrelationID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	return r.LeadID
}

// An unmerge that lands after an erasure read the survivor leaves the
// absorbed lead, another person's again, as it is.
func TestErasureSparesALeadUnmergedMeanwhile(t *testing.T) {
	plain, racing := twoApps(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	keep, other := captured(t, plain, "keep@race.example"), captured(t, plain, "other@race.example")
	pair := app.MergeLeads{Survivor: keep, Absorbed: other, Reason: "same person?"}
	if _, err := plain.MergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}
	racer := racing(keep, func() {
		pair.Reason = "two people after all"
		if _, err := plain.UnmergeLeads(ctx, pair, meta); err != nil {
			t.Errorf("unmerge: %v", err)
		}
	})
	if _, err := racer.EraseLead(ctx, app.EraseLead{LeadID: keep, Reason: "request of keep@"}, meta); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]lifecycle.Status{keep: lifecycle.StatusErased, other: lifecycle.StatusNew} {
		v, err := plain.GetLead(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if v.State.Status != want {
			t.Errorf("lead %s is %s, want %s", id, v.State.Status, want)
		}
	}
	if v, _ := plain.GetLead(ctx, other); v.Contact.GetEmail() != "other@race.example" {
		t.Errorf("the unmerged lead's data no longer opens: %v", v.Contact)
	}
}

// A merge that lands after an erasure read the lead makes it a merged
// lead, whose erasure is refused: it is not erased behind the survivor's
// back.
func TestErasureOfALeadMergedMeanwhileIsRefused(t *testing.T) {
	plain, racing := twoApps(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	a, c := captured(t, plain, "a@away.example"), captured(t, plain, "c@away.example")
	racer := racing(a, func() {
		if _, err := plain.MergeLeads(ctx, app.MergeLeads{Survivor: c, Absorbed: a, Reason: "same"}, meta); err != nil {
			t.Errorf("merge: %v", err)
		}
	})
	_, err := racer.EraseLead(ctx, app.EraseLead{LeadID: a, Reason: "request"}, meta)
	if !errors.Is(err, lifecycle.ErrRefused) {
		t.Fatalf("erase of a lead merged meanwhile: %v, want refused", err)
	}
	if v, _ := plain.GetLead(ctx, a); v.State.Status != lifecycle.StatusMerged {
		t.Fatalf("lead %s is %s, want MERGED", a, v.State.Status)
	}
}

// A merge into the absorbed lead that lands after a merge measured its
// depth is measured again: no chain grows past what captures follow.
func TestMergeDepthIsMeasuredOnEveryTry(t *testing.T) {
	plain, racing := twoApps(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	bottom := captured(t, plain, "d0@depth.example")
	top := bottom
	for i := 1; i <= 6; i++ { // six merges deep
		next := captured(t, plain, fmt.Sprintf("d%d@depth.example", i))
		if _, err := plain.MergeLeads(ctx, app.MergeLeads{Survivor: next, Absorbed: top, Reason: "same"}, meta); err != nil {
			t.Fatal(err)
		}
		top = next
	}
	s, u := captured(t, plain, "s@depth.example"), captured(t, plain, "u@depth.example")
	racer := racing(s, func() {
		if _, err := plain.MergeLeads(ctx, app.MergeLeads{Survivor: s, Absorbed: top, Reason: "same"}, meta); err != nil {
			t.Errorf("merge below: %v", err)
		}
	})
	_, err := racer.MergeLeads(ctx, app.MergeLeads{Survivor: u, Absorbed: s, Reason: "same"}, meta)
	if !errors.Is(err, lifecycle.ErrRefused) {
		t.Fatalf("a merge over a chain that grew meanwhile: %v, want refused", err)
	}
	r, err := plain.CaptureLead(ctx, capture("d0@depth.example", ""), meta)
	if err != nil || r.LeadID != s {
		t.Fatalf("capture of the deepest lead's email: %+v, %v, want it on %s", r, err, s)
	}
}
