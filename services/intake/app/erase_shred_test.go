package app_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/adapters"
	"github.com/leadflow/leadflow/services/intake/app"
)

// unreleasing is the real lead store whose releases of identity claims
// fail, as a server outage would fail them.
type unreleasing struct{ *adapters.Leads }

var errReleaseDown = errors.New("claims unreachable")

func (l unreleasing) Claim(ctx context.Context, k app.ClaimKey, seen app.Holder, c *eventv1.Claim) error {
	if strings.HasPrefix(c.GetEventId(), "release-") {
		return errReleaseDown
	}
	return l.Leads.Claim(ctx, k, seen, c)
}

// An erasure whose identity releases fail has still shredded the lead's
// keys: LeadErased names what to release, so nothing waits on the keys,
// and nobody reads an erased person's data while the releases are retried.
func TestErasureShredsEvenWhenReleasesFail(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	id := captured(t, f.app, "shred-first@erase.example")
	recs, err := f.store.Load(ctx, eventstore.LeadSubject(id))
	if err != nil || len(recs) == 0 {
		t.Fatalf("load: %d events, %v", len(recs), err)
	}
	sealed := recs[0].Event.GetLeadCaptured().GetSealedPersonal()
	if _, err := f.keys.Open(ctx, id, sealed); err != nil {
		t.Fatalf("open before the erasure: %v", err)
	}

	broken := app.New(unreleasing{adapters.NewLeads(f.store)}, adapters.NewCampaigns(f.store), f.keys)
	_, err = broken.EraseLead(ctx, app.EraseLead{LeadID: id, Reason: "request"}, meta)
	if !errors.Is(err, errReleaseDown) {
		t.Fatalf("erase with releases failing: %v, want %v", err, errReleaseDown)
	}
	if _, err := f.keys.Open(ctx, id, sealed); !errors.Is(err, vault.ErrShredded) {
		t.Fatalf("open after the erasure: %v, want %v", err, vault.ErrShredded)
	}
	// Asked again once the claims answer, it releases the identities.
	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: id, Reason: "request"}, meta); err != nil {
		t.Fatalf("erase again: %v", err)
	}
	if again := captured(t, f.app, "shred-first@erase.example"); again == id {
		t.Fatalf("the person captured after the erasure went to the erased lead %s", id)
	}
}

// An identity still claimed by an erased lead (its erasure's releases
// failed, to be retried) that a capture on another lead brings is that
// lead's now: no merge candidate names the erased lead, and the next
// capture of the identity alone finds the lead.
func TestAnErasedHoldersIdentityGoesToTheCapturingLead(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	erased := captured(t, f.app, "gone@takeover.example")
	broken := app.New(unreleasing{adapters.NewLeads(f.store)}, adapters.NewCampaigns(f.store), f.keys)
	if _, err := broken.EraseLead(ctx, app.EraseLead{LeadID: erased, Reason: "request"}, meta); !errors.Is(err, errReleaseDown) {
		t.Fatalf("erase with releases failing: %v, want %v", err, errReleaseDown)
	}
	byExt := capture("kept@takeover.example", "")
	byExt.ExternalID = &eventv1.ExternalId{System: "crm", Id: "takeover-1"}
	r, err := f.app.CaptureLead(ctx, byExt, meta)
	if err != nil {
		t.Fatal(err)
	}
	kept := r.LeadID
	both := capture("gone@takeover.example", "")
	both.ExternalID = byExt.ExternalID
	if r, err := f.app.CaptureLead(ctx, both, meta); err != nil || r.LeadID != kept {
		t.Fatalf("capture by the external id with the erased lead's email: %+v, %v; want it on %s", r, err, kept)
	}
	tl, err := f.app.GetLeadTimeline(ctx, kept)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tl {
		if c := e.Record.Event.GetMergeCandidateFound(); c != nil {
			t.Errorf("a merge candidate on %s: %v", kept, c)
		}
	}
	if r, err := f.app.CaptureLead(ctx, capture("gone@takeover.example", ""), meta); err != nil || r.LeadID != kept || r.Outcome != app.Resubmitted {
		t.Fatalf("capture by the email alone: %+v, %v; want a resubmission on %s", r, err, kept)
	}
}

// laterSeen records, for each time an erasure's finish is scheduled,
// whether the lead was erased by then.
type laterSeen struct {
	store  *eventstore.Store
	erased []bool
}

func (*laterSeen) FinishUnmerge(context.Context, string, time.Time) error { return nil }

func (l *laterSeen) FinishErase(ctx context.Context, leadID string, _ time.Time) error {
	recs, err := l.store.Load(ctx, eventstore.LeadSubject(leadID))
	if err != nil {
		return err
	}
	l.erased = append(l.erased, len(recs) > 0 && recs[len(recs)-1].Event.GetLeadErased() != nil)
	return nil
}

// An erasure's finish is scheduled before its commit, for a crash after
// it, and again once LeadErased is stored: the first may fire before the
// commit lands (a slow commit, a clock behind the server's), find the
// lead not erased, and be spent.
func TestErasureFinishIsScheduledAfterItsCommit(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	id := captured(t, f.app, "finish@erase.example")
	later := &laterSeen{store: f.store}
	a := app.New(f.leads, adapters.NewCampaigns(f.store), f.keys, app.WithLater(later, time.Minute))
	if _, err := a.EraseLead(ctx, app.EraseLead{LeadID: id, Reason: "request"}, meta); err != nil {
		t.Fatal(err)
	}
	if n := len(later.erased); n == 0 || !later.erased[n-1] {
		t.Fatalf("finish scheduled %d times, erased by then %v: want the last once LeadErased was stored", n, later.erased)
	}
}

// A survivor's erasure whose merged lead's releases fail goes on: the
// merged lead is erased (its keys shredded, its timer finishes the
// releases), and the survivor is erased too, nothing of it readable,
// though the call answers the failure. It used to stop before the
// survivor's LeadErased, which left it readable with no timer to finish.
func TestASurvivorsErasureGoesOnPastAMergedLeadsFailedRelease(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	survivor, absorbed := captured(t, f.app, "s@release-down.example"), captured(t, f.app, "a@release-down.example")
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: survivor, Absorbed: absorbed, Reason: "one person"}, meta); err != nil {
		t.Fatal(err)
	}
	// The survivor's first append loses a race (an activity stored after
	// the merged lead's erasure): the next try finds that lead erased,
	// its releases still failing, and goes on too.
	raced, atRace := false, 0
	later := &laterLeads{}
	down := app.New(unreleasing{f.leads.Leads}, adapters.NewCampaigns(f.store), f.keys, app.WithLater(later, time.Minute), app.WithCrashPoints(func(p app.CrashPoint, lead string) {
		if p == app.AfterErased && lead == absorbed && !raced {
			raced, atRace = true, later.count(absorbed)
			if _, err := f.app.RecordActivity(ctx, app.RecordActivity{LeadID: survivor, ActivityID: "between",
				Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}, meta); err != nil {
				t.Error(err)
			}
		}
	}))
	if _, err := down.EraseLead(ctx, app.EraseLead{LeadID: survivor, Reason: "request"}, meta); !errors.Is(err, errReleaseDown) {
		t.Fatalf("erasure with releases down: %v, want %v", err, errReleaseDown)
	}
	if v, err := f.app.GetLead(ctx, survivor); err != nil || !v.Erased || v.Contact != nil || !raced {
		t.Fatalf("the survivor after its merged lead's releases failed (raced %v): %+v, %v; want it erased, nothing readable", raced, v, err)
	}
	// Scheduled with its commit, and again when the second pass found
	// it erased (a timer that fired may be spent).
	if n := later.count(absorbed); n != atRace+1 {
		t.Fatalf("the merged lead's finish scheduled %d times after the race, want once more on the second pass", n-atRace)
	}
	// Without timers nothing would finish it: the caller hears of it,
	// and the survivor is not erased past it.
	other, gone := captured(t, f.app, "s2@release-down.example"), captured(t, f.app, "a2@release-down.example")
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: other, Absorbed: gone, Reason: "one person"}, meta); err != nil {
		t.Fatal(err)
	}
	bare := app.New(unreleasing{f.leads.Leads}, adapters.NewCampaigns(f.store), f.keys)
	if _, err := bare.EraseLead(ctx, app.EraseLead{LeadID: other, Reason: "request"}, meta); !errors.Is(err, errReleaseDown) {
		t.Fatalf("erasure without timers, releases down: %v, want %v", err, errReleaseDown)
	}
	if v, err := f.app.GetLead(ctx, other); err != nil || v.Erased {
		t.Fatalf("the survivor, its merged lead unfinished and no timer: %+v, %v; want it not erased", v, err)
	}
}

// laterLeads records the leads whose erasure's finish is scheduled.
type laterLeads struct {
	mu    sync.Mutex
	leads []string
}

func (*laterLeads) FinishUnmerge(context.Context, string, time.Time) error { return nil }

func (l *laterLeads) FinishErase(_ context.Context, leadID string, _ time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leads = append(l.leads, leadID)
	return nil
}

func (l *laterLeads) count(leadID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, x := range l.leads {
		if x == leadID {
			n++
		}
	}
	return n
}

// A merged lead whose keys could not be shredded is not erased as far
// as the caller goes: its data still opens, so the survivor's erasure
// answers the failure, not success.
func TestASurvivorsErasureAnswersAMergedLeadsFailedShred(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	survivor, absorbed := captured(t, f.app, "s@shred-down.example"), captured(t, f.app, "a@shred-down.example")
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: survivor, Absorbed: absorbed, Reason: "one person"}, meta); err != nil {
		t.Fatal(err)
	}
	down := app.New(f.leads.Leads, adapters.NewCampaigns(f.store), unshredding{Keys: f.keys, lead: absorbed})
	if _, err := down.EraseLead(ctx, app.EraseLead{LeadID: survivor, Reason: "request"}, meta); !errors.Is(err, errShredDown) {
		t.Fatalf("erasure with the merged lead's shred failing: %v, want %v", err, errShredDown)
	}
}

var errShredDown = errors.New("keys unreachable")

// unshredding is a vault whose shreds of lead's keys fail.
type unshredding struct {
	app.Keys
	lead string
}

func (u unshredding) Shred(ctx context.Context, leadID string, keyIDs ...string) error {
	if leadID == u.lead {
		return errShredDown
	}
	return u.Keys.Shred(ctx, leadID, keyIDs...)
}

// A survivor's erasure cut short (a crash) after the lead merged into it
// was erased leaves the survivor as it was: readable, not shown erased,
// though what came through the erased lead opens no more. Asking again
// finishes it.
func TestASurvivorsErasureCutShortIsNotShownErased(t *testing.T) {
	var survivor, absorbed string
	f := newFixtureWith(t, eventstore.StreamConfig{}, func(f *fixture, p app.CrashPoint, lead string) {
		if p == app.AfterErased && lead == absorbed {
			f.leads.crashNext.Store(true) // the survivor's LeadErased is not stored
		}
	})
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	survivor, absorbed = captured(t, f.app, "s@cut-short.example"), captured(t, f.app, "a@cut-short.example")
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: survivor, Absorbed: absorbed, Reason: "one person"}, meta); err != nil {
		t.Fatal(err)
	}
	through := capture("a@cut-short.example", "")
	through.Contact.FirstName = "Annzq"
	if r, err := f.app.CaptureLead(ctx, through, meta); err != nil || r.LeadID != survivor {
		t.Fatalf("capture through the absorbed lead: %+v, %v", r, err)
	}
	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: survivor, Reason: "request"}, meta); !errors.Is(err, errCrash) {
		t.Fatalf("erasure cut short: %v, want %v", err, errCrash)
	}
	v, err := f.app.GetLead(ctx, survivor)
	if err != nil || v.Erased || v.Contact.GetFirstName() != "Ada" || v.Contact.GetEmail() != "s@cut-short.example" {
		t.Fatalf("the survivor after an erasure cut short: %+v, %v; want its own data, not erased", v, err)
	}
	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: survivor, Reason: "request"}, meta); err != nil {
		t.Fatal(err)
	}
	if v, err := f.app.GetLead(ctx, survivor); err != nil || !v.Erased {
		t.Fatalf("the survivor erased again: %+v, %v", v, err)
	}
}

// The same one level deeper (a merged into b, b into s): b's access
// request still answers, without what a's erasure shredded.
func TestAnExportAfterAnErasureCutShortInAChainAnswers(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	s, b, a := captured(t, f.app, "s@cut-chain.example"), captured(t, f.app, "b@cut-chain.example"), captured(t, f.app, "a@cut-chain.example")
	for _, m := range []app.MergeLeads{{Survivor: b, Absorbed: a, Reason: "same"}, {Survivor: s, Absorbed: b, Reason: "same"}} {
		if _, err := f.app.MergeLeads(ctx, m, meta); err != nil {
			t.Fatal(err)
		}
	}
	through := capture("a@cut-chain.example", "")
	through.Contact.FirstName = "Annzq"
	if r, err := f.app.CaptureLead(ctx, through, meta); err != nil || r.LeadID != s {
		t.Fatalf("capture through the chain: %+v, %v", r, err)
	}
	down := app.New(unreleasing{f.leads.Leads}, adapters.NewCampaigns(f.store), f.keys)
	if _, err := down.EraseLead(ctx, app.EraseLead{LeadID: s, Reason: "request"}, meta); !errors.Is(err, errReleaseDown) {
		t.Fatalf("erasure with releases down: %v, want %v", err, errReleaseDown)
	}
	x, err := f.app.ExportLead(ctx, b)
	if err != nil {
		t.Fatalf("export of b: %v", err)
	}
	for _, sub := range x.Submissions {
		if sub.Personal.GetContact().GetFirstName() == "Annzq" {
			t.Errorf("b's export opens what a's erasure shredded")
		}
	}
}
