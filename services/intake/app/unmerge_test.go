package app_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/intake/adapters"
	"github.com/leadflow/leadflow/services/intake/app"
	"github.com/leadflow/leadflow/services/intake/form"
)

// exportTexts is every personal text an export opened: first names and
// activity details, the merged leads' included.
func exportTexts(x app.Export) []string {
	var out []string
	for _, s := range x.Submissions {
		out = append(out, s.Personal.GetContact().GetFirstName())
	}
	for _, a := range x.Activities {
		out = append(out, a.Detail)
	}
	for _, y := range x.Absorbed {
		out = append(out, exportTexts(y)...)
	}
	return out
}

// What a merged lead's person sends while merged goes on to the survivor,
// sealed with the merged lead's key. An unmerge gives it back: the
// survivor's view no longer shows it, the absorbed lead's does (replayed
// on it), a new identity it brought is the absorbed lead's, and the
// absorbed lead's erasure leaves none of it readable on the survivor.
func TestUnmergeGivesBackWhatCameThroughTheAbsorbedLead(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	bobCapture := capture("bob@back.example", "")
	bobCapture.Contact.FirstName = "Bob"
	r, err := f.app.CaptureLead(ctx, bobCapture, meta)
	if err != nil {
		t.Fatal(err)
	}
	bob, alice := r.LeadID, captured(t, f.app, "alice@back.example")
	pair := app.MergeLeads{Survivor: bob, Absorbed: alice, Reason: "same person?"}
	if _, err := f.app.MergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}

	again := capture("alice@back.example", "")
	again.Contact.FirstName, again.ExternalID = "Alicezq", &eventv1.ExternalId{System: "crm", Id: "alice-7"}
	if r, err := f.app.CaptureLead(ctx, again, meta); err != nil || r.LeadID != bob {
		t.Fatalf("capture of the merged person: %+v, %v; want it on the survivor %s", r, err, bob)
	}
	if _, err := f.app.RecordActivity(ctx, app.RecordActivity{LeadID: alice, ActivityID: "act-zq",
		Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT, Detail: "alice-private-zq"}, meta); err != nil {
		t.Fatal(err)
	}
	if v, err := f.app.GetLead(ctx, bob); err != nil || v.Contact.GetFirstName() != "Alicezq" || v.Activities != 1 {
		t.Fatalf("survivor while merged: %+v, %v; want the merged person's submission and activity", v, err)
	}
	// An access request for her lead while merged returns what she sent
	// since, held on the survivor; the survivor's own data it does not.
	x, err := f.app.ExportLead(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if texts := exportTexts(x); !slices.Contains(texts, "Alicezq") || !slices.Contains(texts, "alice-private-zq") || slices.Contains(texts, "Bob") {
		t.Errorf("export of the merged lead: %v; want what she sent while merged, and nothing of Bob's", texts)
	}
	for _, s := range x.Submissions[1:] {
		if s.StoredOn != bob {
			t.Errorf("a submission sent while merged is marked stored on %q, want %s", s.StoredOn, bob)
		}
	}
	if n := len(x.Activities); n != 1 || x.Activities[0].StoredOn != bob {
		t.Errorf("activities of the merged lead's export: %+v; want the one sent while merged, stored on %s", x.Activities, bob)
	}
	// Nested in the survivor's export, none of it comes twice.
	if x, err := f.app.ExportLead(ctx, bob); err != nil || len(x.Absorbed) != 1 || len(x.Absorbed[0].Activities) != 0 || len(x.Activities) != 1 {
		t.Errorf("survivor's export: %d own activities, absorbed %d, %v; want the one activity once", len(x.Activities), len(x.Absorbed), err)
	}

	pair.Reason = "two people after all"
	if _, err := f.app.UnmergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}
	if v, err := f.app.GetLead(ctx, bob); err != nil || v.Contact.GetFirstName() != "Bob" || v.Activities != 0 || v.Submissions != 1 {
		t.Errorf("survivor after the unmerge: name %q, %d activities, %d submissions, %v; want Bob's own only",
			v.Contact.GetFirstName(), v.Activities, v.Submissions, err)
	}
	if v, err := f.app.GetLead(ctx, alice); err != nil || v.Contact.GetFirstName() != "Alicezq" || v.Activities != 1 || v.Submissions != 2 {
		t.Errorf("absorbed lead after the unmerge: name %q, %d activities, %d submissions, %v; want what she sent meanwhile",
			v.Contact.GetFirstName(), v.Activities, v.Submissions, err)
	}
	if x, err := f.app.ExportLead(ctx, alice); err != nil || !slices.Contains(exportTexts(x), "alice-private-zq") {
		t.Errorf("export of the absorbed lead: %v, %v; want the activity's detail", exportTexts(x), err)
	}
	// Bob's access request no longer returns what she sent.
	if x, err := f.app.ExportLead(ctx, bob); err != nil || len(x.Submissions) != 1 || len(x.Activities) != 0 ||
		slices.Contains(exportTexts(x), "Alicezq") || slices.Contains(exportTexts(x), "alice-private-zq") {
		t.Errorf("survivor's export after the unmerge: %v, %d submissions, %d activities, %v; want Bob's own only",
			exportTexts(x), len(x.Submissions), len(x.Activities), err)
	}
	tl, err := f.app.GetLeadTimeline(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	given := 0
	var named []string // what both LeadUnmerged events say went back
	for _, e := range tl {
		if e.Record.Event.GetLeadResubmitted().GetGivenBackBy() == bob || e.Record.Event.GetActivityRecorded().GetGivenBackBy() == bob {
			given++
		}
		if u := e.Record.Event.GetLeadUnmerged(); u != nil {
			named = u.GetGivenBackEventIds()
		}
	}
	if given != 2 {
		t.Errorf("%d events on the absorbed lead marked given back by the survivor, want 2", given)
	}
	stl, err := f.app.GetLeadTimeline(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	var sent []string // the survivor's events that came through alice's lead
	for _, e := range stl {
		if e.Record.Event.GetLeadResubmitted().GetMergedFrom() == alice || e.Record.Event.GetActivityRecorded().GetMergedFrom() == alice {
			sent = append(sent, e.Record.Event.GetEventId())
		}
		if u := e.Record.Event.GetLeadUnmerged(); u != nil && !slices.Equal(u.GetGivenBackEventIds(), named) {
			t.Errorf("the survivor's LeadUnmerged names %v given back, the absorbed lead's %v", u.GetGivenBackEventIds(), named)
		}
	}
	if len(sent) != 2 || !slices.Equal(named, sent) {
		t.Errorf("LeadUnmerged names %v given back, want the survivor's events that came through the lead: %v", named, sent)
	}
	// The external id she brought while merged is hers.
	byExt := capture("someone@back.example", "")
	byExt.ExternalID = again.ExternalID
	if r, err := f.app.CaptureLead(ctx, byExt, meta); err != nil || r.LeadID != alice {
		t.Errorf("capture by the external id brought while merged: %+v, %v; want %s", r, err, alice)
	}
	// Unmerging again writes nothing more.
	events := func() int {
		tl, err := f.app.GetLeadTimeline(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		return len(tl)
	}
	before := events()
	if _, err := f.app.UnmergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}
	if n := events(); n != before {
		t.Errorf("a second unmerge wrote %d events", n-before)
	}

	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: alice, Reason: "request"}, meta); err != nil {
		t.Fatal(err)
	}
	x, err = f.app.ExportLead(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range exportTexts(x) {
		if strings.Contains(s, "zq") {
			t.Errorf("after her erasure the survivor's export still opens %q", s)
		}
	}
}

// The survivor's erasure after an unmerge shreds nothing of what the
// unmerge gave back: sealed with the absorbed lead's key, that is the
// other person's, readable on their lead.
func TestSurvivorsErasureSparesWhatAnUnmergeGaveBack(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	bob := captured(t, f.app, "bob@spare.example")
	first := capture("alice@spare.example", "")
	first.Contact.FirstName = "Alice"
	r, err := f.app.CaptureLead(ctx, first, meta)
	if err != nil {
		t.Fatal(err)
	}
	alice := r.LeadID
	pair := app.MergeLeads{Survivor: bob, Absorbed: alice, Reason: "same person?"}
	if _, err := f.app.MergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}
	again := capture("alice@spare.example", "")
	again.Contact.FirstName = "Alicezq"
	if r, err := f.app.CaptureLead(ctx, again, meta); err != nil || r.LeadID != bob {
		t.Fatalf("capture of the merged person: %+v, %v; want it on the survivor %s", r, err, bob)
	}
	if _, err := f.app.RecordActivity(ctx, app.RecordActivity{LeadID: alice, ActivityID: "act-spare",
		Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT, Detail: "alice-private-spare"}, meta); err != nil {
		t.Fatal(err)
	}
	pair.Reason = "two people"
	if _, err := f.app.UnmergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: bob, Reason: "request"}, meta); err != nil {
		t.Fatal(err)
	}
	// Read by another process, whose cache holds none of her keys.
	other := f.fresh(t)
	if v, err := other.GetLead(ctx, alice); err != nil || v.Contact.GetFirstName() != "Alicezq" {
		t.Fatalf("the unmerged lead after the survivor's erasure: %+v, %v; want her latest name readable", v.Contact, err)
	}
	x, err := other.ExportLead(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if texts := exportTexts(x); !slices.Contains(texts, "Alice") || !slices.Contains(texts, "Alicezq") || !slices.Contains(texts, "alice-private-spare") {
		t.Errorf("export of the unmerged lead after the survivor's erasure: %v; want all she sent", texts)
	}
}

// A survivor that got a capture through the lead merged into it is
// erased with it: the absorbed lead, erased first, took its key along, and
// the survivor's erasure goes on past what that key sealed.
func TestSurvivorWithACaptureThroughItsAbsorbedLeadIsErased(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	survivor, absorbed := captured(t, f.app, "s@erase-both.example"), captured(t, f.app, "a@erase-both.example")
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: survivor, Absorbed: absorbed, Reason: "one person"}, meta); err != nil {
		t.Fatal(err)
	}
	through := capture("a@erase-both.example", "")
	through.ExternalID = &eventv1.ExternalId{System: "crm", Id: "erase-both-7"} // claimed for the absorbed lead
	if r, err := f.app.CaptureLead(ctx, through, meta); err != nil || r.LeadID != survivor {
		t.Fatalf("capture through the absorbed lead: %+v, %v", r, err)
	}
	ext := app.ClaimKey{Kind: app.KindExt, Token: f.keys.BlindID(app.KindExt, "crm\x00erase-both-7")}
	if held, err := f.leads.Holders(ctx, ext); err != nil || held[ext].LeadID != absorbed {
		t.Fatalf("the external id brought through the absorbed lead is held by %+v (%v), want %s", held[ext], err, absorbed)
	}
	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: survivor, Reason: "request"}, meta); err != nil {
		t.Fatalf("erasure of the survivor: %v", err)
	}
	for _, id := range []string{survivor, absorbed} {
		tl, err := f.app.GetLeadTimeline(ctx, id)
		if err != nil || len(tl) == 0 || tl[len(tl)-1].Record.Event.GetLeadErased() == nil {
			t.Errorf("lead %s after the erasure: last event not LeadErased (%v)", id, err)
		}
	}
	// Released with the absorbed lead, and named by its LeadErased.
	if held, err := f.leads.Holders(ctx, ext); err != nil || held[ext].LeadID != "" {
		t.Errorf("after the erasure the external id is held by %+v (%v), want nobody", held[ext], err)
	}
	tl, err := f.app.GetLeadTimeline(ctx, absorbed)
	if err != nil {
		t.Fatal(err)
	}
	if rel := tl[len(tl)-1].Record.Event.GetLeadErased().GetReleased(); !slices.ContainsFunc(rel, func(i *eventv1.Identity) bool { return i.GetToken() == ext.Token }) {
		t.Errorf("the absorbed lead's LeadErased releases %v, not the external id", rel)
	}
}

// A keyed capture that went through a merged lead, sent again after the
// unmerge, answers as first and writes nothing: its identities are the
// absorbed lead's, as claimed, not a merge candidate of the two.
func TestACaptureThroughAMergedLeadRepeatedAfterTheUnmergeWritesNothing(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	keyed := capture("a@repeat-unmerge.example", "k-repeat")
	keyed.ExternalID = &eventv1.ExternalId{System: "crm", Id: "a-repeat"}
	_, _, first := f.givenBack(t, "repeat-unmerge", keyed)
	before := f.lastSeq(t)
	again, err := f.app.CaptureLead(ctx, keyed, meta)
	if err != nil || !again.Replayed || again.LeadID != first.LeadID || again.Version != first.Version {
		t.Fatalf("the repeat: %+v, %v; want the first answer %+v", again, err, first)
	}
	if after := f.lastSeq(t); after != before {
		t.Errorf("the repeat wrote %d messages", after-before)
	}
}

// The other system's record sent through a merged lead, with its time
// and no key, is a retry whenever it comes until its person's lead is
// erased: the survivor it landed on, erased after an unmerge gave the
// capture back, is another person, and the repeat writes nothing; the
// person's own erasure ends it, whatever became of the survivor.
func TestAnExternalRecordGivenBackOutlivesTheSurvivorsErasure(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	erase := func(id string) {
		t.Helper()
		if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: id, Reason: "access request"}, meta); err != nil {
			t.Fatal(err)
		}
	}
	record := externalRecord("given-erased")
	survivor, _, _ := f.givenBack(t, "given-erased", record)
	erase(survivor)
	before := f.lastSeq(t)
	if again, err := f.app.CaptureLead(ctx, record, meta); err != nil || !again.Replayed {
		t.Fatalf("the repeat: %+v, %v; want the first answer", again, err)
	}
	if after := f.lastSeq(t); after != before {
		t.Fatalf("the repeat wrote %d messages", after-before)
	}

	record = externalRecord("person-erased")
	survivor, absorbed, _ := f.givenBack(t, "person-erased", record)
	erase(absorbed)
	if fresh, err := f.app.CaptureLead(ctx, record, meta); err != nil || fresh.Replayed || fresh.LeadID == survivor || fresh.LeadID == absorbed {
		t.Fatalf("after its person's erasure: %+v, %v; want a new lead, not an answer naming the survivor %s", fresh, err, survivor)
	}
}

// In a chain (a merged into b, b into s), what a's person sends lands on
// s. Unmerging b gives it back to b, still sealed with a's key and naming
// a; unmerging a from b then gives it to a, and a's erasure leaves it
// readable nowhere.
func TestUnmergeGivesBackThroughAChain(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	named := func(email, first string) string { return f.named(t, email, first) }
	s, b, a := named("s@chain.example", "Sam"), named("b@chain.example", "Ben"), named("a@chain.example", "Ann")
	for _, m := range []app.MergeLeads{{Survivor: b, Absorbed: a, Reason: "same"}, {Survivor: s, Absorbed: b, Reason: "same"}} {
		if _, err := f.app.MergeLeads(ctx, m, meta); err != nil {
			t.Fatal(err)
		}
	}
	if got := named("a@chain.example", "Annzq"); got != s {
		t.Fatalf("a's capture through the chain went to %s, want %s", got, s)
	}
	if _, err := f.app.RecordActivity(ctx, app.RecordActivity{LeadID: a, ActivityID: "act-chain",
		Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT, Detail: "ann-private-zq"}, meta); err != nil {
		t.Fatal(err)
	}
	want := func(lead, first string, activities int) {
		t.Helper()
		v, err := f.app.GetLead(ctx, lead)
		if err != nil || v.Contact.GetFirstName() != first || v.Activities != activities {
			t.Errorf("lead %s: name %q, %d activities, %v; want %q and %d", lead, v.Contact.GetFirstName(), v.Activities, err, first, activities)
		}
	}
	want(s, "Annzq", 1)

	if _, err := f.app.UnmergeLeads(ctx, app.MergeLeads{Survivor: s, Absorbed: b, Reason: "not the same"}, meta); err != nil {
		t.Fatal(err)
	}
	want(s, "Sam", 0)
	want(b, "Annzq", 1) // a is still merged into b
	if _, err := f.app.UnmergeLeads(ctx, app.MergeLeads{Survivor: b, Absorbed: a, Reason: "not the same"}, meta); err != nil {
		t.Fatal(err)
	}
	want(b, "Ben", 0)
	want(a, "Annzq", 1)

	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: a, Reason: "request"}, meta); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{s, b} {
		x, err := f.app.ExportLead(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range exportTexts(x) {
			if strings.Contains(text, "zq") {
				t.Errorf("after a's erasure the export of %s still opens %q", id, text)
			}
		}
	}
}

// In a chain built in steps (a merged into b; a's person sends a form,
// stored on b; b merged into s; a's person sends another, stored on s),
// an access request finds each submission whichever survivor holds it:
// a's export both, and b's export, which holds a's, the one stored above
// b as well.
func TestExportFindsWhatAChainHoldsOnEverySurvivor(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	named := func(email, first string) string { return f.named(t, email, first) }
	s, b, a := named("s@steps.example", "Sam"), named("b@steps.example", "Ben"), named("a@steps.example", "Ann")
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: b, Absorbed: a, Reason: "same"}, meta); err != nil {
		t.Fatal(err)
	}
	if got := named("a@steps.example", "Annzq"); got != b {
		t.Fatalf("a's capture went to %s, want b %s", got, b)
	}
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: s, Absorbed: b, Reason: "same"}, meta); err != nil {
		t.Fatal(err)
	}
	if got := named("a@steps.example", "Annyy"); got != s {
		t.Fatalf("a's second capture went to %s, want s %s", got, s)
	}
	for lead, want := range map[string][]string{a: {"Ann", "Annzq", "Annyy"}, b: {"Ben", "Ann", "Annzq", "Annyy"}} {
		x, err := f.app.ExportLead(ctx, lead)
		if err != nil {
			t.Fatal(err)
		}
		got := exportTexts(x)
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("export of %s: %v, missing %q", lead, got, w)
			}
		}
		if slices.Contains(got, "Sam") || len(got) != len(want) {
			t.Errorf("export of %s: %v, want exactly %v", lead, got, want)
		}
	}
}

// A submission that came through a merged lead before 2026-12-05 was
// sealed with the survivor's key: an unmerge cannot give it back, and the
// survivor's export still returns it, once.
func TestAnOlderSubmissionAnUnmergeLeftIsInTheSurvivorsExport(t *testing.T) {
	t.Run("block key", func(t *testing.T) { testAnOlderSubmissionAnUnmergeLeft(t, false) })
	// Sealed before key blocks (2026-12-02), with a key of the lead's own.
	t.Run("lead key", func(t *testing.T) { testAnOlderSubmissionAnUnmergeLeft(t, true) })
}

func testAnOlderSubmissionAnUnmergeLeft(t *testing.T, leadKey bool) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	s, a := captured(t, f.app, "s@legacy.example"), captured(t, f.app, "a@legacy.example")
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: s, Absorbed: a, Reason: "same"}, meta); err != nil {
		t.Fatal(err)
	}
	key, err := f.keys.Key(ctx, s)
	if leadKey {
		if key, err = f.keys.NewKey(s); err == nil {
			err = f.keys.Save(ctx, key)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	plain, err := proto.Marshal(&eventv1.Personal{Contact: &eventv1.Contact{Email: "a@legacy.example", FirstName: "Legacyzq"}})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := key.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := f.store.Load(ctx, eventstore.LeadSubject(s))
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	ev, _, err := lifecycle.NewEvent(s, lifecycle.FromProto(last.Event.GetLifecycle()), lifecycle.Command{Name: lifecycle.Resubmit}, lifecycle.DefaultPolicy(),
		&eventv1.LeadResubmitted{SealedPersonal: sealed, MergedFrom: a, Attribution: &eventv1.Attribution{Source: "web-form"}}, meta, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seq, err := f.store.Append(ctx, eventstore.LeadSubject(s), last.Seq, ev)
	if err != nil {
		t.Fatal(err)
	}
	// And an activity of hers, its detail sealed the same way.
	detail, err := key.Seal([]byte("legacy-detail-zq"))
	if err != nil {
		t.Fatal(err)
	}
	act, _, err := lifecycle.NewEvent(s, lifecycle.FromProto(ev.GetLifecycle()), lifecycle.Command{Name: lifecycle.RecordActivity}, lifecycle.DefaultPolicy(),
		&eventv1.ActivityRecorded{ActivityId: "legacy-act", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT, SealedDetail: detail, MergedFrom: a}, meta, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Append(ctx, eventstore.LeadSubject(s), seq, act); err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.UnmergeLeads(ctx, app.MergeLeads{Survivor: s, Absorbed: a, Reason: "two people"}, meta); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, id := range []string{s, a} {
		x, err := f.app.ExportLead(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range exportTexts(x) {
			count[text]++
		}
	}
	if count["Legacyzq"] != 1 || count["legacy-detail-zq"] != 1 {
		t.Fatalf("the older submission is in %d exports and the activity in %d, want 1 each (the survivor's)", count["Legacyzq"], count["legacy-detail-zq"])
	}
	// With the vault out of reach for the lead it came through, nothing
	// says whether it was given back: the export fails rather than leave
	// it out.
	flaky := app.New(f.leads.Leads, adapters.NewCampaigns(f.store), unopenable{Keys: f.keys, lead: a})
	if x, err := flaky.ExportLead(ctx, s); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the survivor's export with %s's keys out of reach: %v, %v; want the failure", a, exportTexts(x), err)
	}
}

// unopenable is a vault that cannot be reached for lead's keys.
type unopenable struct {
	app.Keys
	lead string
}

func (u unopenable) Open(ctx context.Context, leadID string, sealed []byte) ([]byte, error) {
	if leadID == u.lead {
		return nil, context.DeadlineExceeded
	}
	return u.Keys.Open(ctx, leadID, sealed)
}

// named captures a new person of that email and first name and returns
// the lead.
func (f *fixture) named(t *testing.T, email, first string) string {
	t.Helper()
	c := capture(email, "")
	c.Contact.FirstName = first
	r, err := f.app.CaptureLead(ctxT(t), c, envelope.Meta{CorrelationID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	return r.LeadID
}

// givenBack captures record through lead a@<name>.example, merged into
// s@<name>.example, and unmerges the two: the survivor, the absorbed lead
// and the capture's first answer.
func (f *fixture) givenBack(t *testing.T, name string, record form.Capture) (survivor, absorbed string, first app.CaptureResult) {
	t.Helper()
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	survivor, absorbed = captured(t, f.app, "s@"+name+".example"), captured(t, f.app, "a@"+name+".example")
	pair := app.MergeLeads{Survivor: survivor, Absorbed: absorbed, Reason: "one person"}
	if _, err := f.app.MergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}
	first, err := f.app.CaptureLead(ctx, record, meta)
	if err != nil || first.LeadID != survivor {
		t.Fatalf("capture through the absorbed lead: %+v, %v", first, err)
	}
	pair.Reason = "two people"
	if _, err := f.app.UnmergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}
	return survivor, absorbed, first
}

// externalRecord is the other system's record of a@<name>.example: an
// external id and a time, no key.
func externalRecord(name string) form.Capture {
	record := capture("a@"+name+".example", "")
	record.ExternalID = &eventv1.ExternalId{System: "crm", Id: name}
	record.OccurredAt = time.Now().Add(-time.Hour).Truncate(time.Second)
	return record
}

// lastSeq is the lead stream's last sequence: any write moves it.
func (f *fixture) lastSeq(t *testing.T) uint64 {
	t.Helper()
	s, err := f.nats.JS.Stream(ctxT(t), "LEADFLOW")
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// A keyed capture that came through a merged lead claimed its new email
// for that lead; retried after the lead was unmerged and erased, it
// writes nothing: the erasure released the person, and their next
// capture makes a fresh lead.
func TestAReplayDoesNotClaimForAnErasedLead(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	withID := func(email, key string) form.Capture {
		c := capture(email, key)
		c.ExternalID = &eventv1.ExternalId{System: "crm", Id: "ann-1"}
		return c
	}
	first, err := f.app.CaptureLead(ctx, withID("ann@home.example", ""), meta)
	if err != nil {
		t.Fatal(err)
	}
	a, b := first.LeadID, f.named(t, "ben@x.example", "Ben")
	pair := app.MergeLeads{Survivor: b, Absorbed: a, Reason: "same"}
	if _, err := f.app.MergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}
	again := withID("ann@new.example", "webhook-991")
	if r, err := f.app.CaptureLead(ctx, again, meta); err != nil || r.LeadID != b {
		t.Fatalf("through the merge: %+v, %v; want lead %s", r, err, b)
	}
	if _, err := f.app.UnmergeLeads(ctx, pair, meta); err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: a, Reason: "request"}, meta); err != nil {
		t.Fatal(err)
	}
	before := f.lastSeq(t)
	if _, err := f.app.CaptureLead(ctx, again, meta); err != nil {
		t.Fatal(err)
	}
	if after := f.lastSeq(t); after != before {
		t.Fatalf("the retry wrote %d messages; want none", after-before)
	}
	r, err := f.app.CaptureLead(ctx, capture("ann@new.example", ""), meta)
	if err != nil || r.Outcome != app.Created || r.LeadID == a || r.LeadID == b {
		t.Fatalf("Ann signs up again: %+v, %v; want a fresh lead", r, err)
	}
}
