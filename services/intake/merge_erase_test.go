package main

import (
	"cmp"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/intake/app"
)

const (
	emailChannel    = eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL
	phoneChannel    = eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE
	smsChannel      = eventv1.ConsentChannel_CONSENT_CHANNEL_SMS
	trackingChannel = eventv1.ConsentChannel_CONSENT_CHANNEL_TRACKING
	granted         = eventv1.ConsentStatus_CONSENT_STATUS_GRANTED
	withdrawn       = eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN
)

func consentOf(l *intakev1.Lead, ch eventv1.ConsentChannel) eventv1.ConsentStatus {
	for _, c := range l.GetConsents() {
		if c.GetChannel() == ch {
			return c.GetStatus()
		}
	}
	return eventv1.ConsentStatus_CONSENT_STATUS_UNSPECIFIED
}

func (e *env) setConsent(t *testing.T, leadID string, ch eventv1.ConsentChannel, st eventv1.ConsentStatus) {
	t.Helper()
	if _, err := e.client.SetConsent(ctxT(t), &intakev1.SetConsentRequest{LeadId: leadID, Source: "preference-center",
		Consent: &eventv1.Consent{Channel: ch, Status: st}}); err != nil {
		t.Fatal(err)
	}
}

// A person who withdrew on one of their leads has withdrawn: merging that
// lead away must not bring the other lead's grant back.
func TestMergeKeepsAWithdrawalOfTheAbsorbedLead(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	keeper := e.capture(t, lead("keeper@c.example")).GetLeadId()
	dupe := e.capture(t, lead("dupe@c.example")).GetLeadId()
	for _, id := range []string{keeper, dupe} {
		e.setConsent(t, id, emailChannel, granted)
		e.setConsent(t, id, phoneChannel, granted)
	}
	e.setConsent(t, dupe, emailChannel, withdrawn)
	m, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: keeper, AbsorbedLeadId: dupe, Reason: "same person"})
	if err != nil {
		t.Fatal(err)
	}
	s := e.getLead(t, keeper)
	if consentOf(s, emailChannel) != withdrawn || consentOf(s, phoneChannel) != granted {
		t.Fatalf("survivor's consents after the merge: %v, want email withdrawn, phone still granted", s.GetConsents())
	}
	tl := e.timeline(t, keeper)
	if last := tl[len(tl)-1]; last.GetConsentChanged().GetSource() != "merge" || m.GetSurvivorVersion() == 0 {
		t.Fatalf("survivor's last event %v, want the withdrawal the merge carried over", last)
	}
	// Merging again is still a no-op.
	before := e.counts(t)
	if again, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: keeper, AbsorbedLeadId: dupe, Reason: "same person"}); err != nil || !again.GetReplayed() {
		t.Fatalf("merging again: %v %v", again, err)
	}
	e.assertCounts(t, before)
	// Two people after all: the keeper's own grant comes back, the dupe
	// keeps its withdrawal.
	e.unmerge(t, keeper, dupe, "two people")
	if s, d := e.getLead(t, keeper), e.getLead(t, dupe); consentOf(s, emailChannel) != granted || consentOf(s, phoneChannel) != granted ||
		consentOf(d, emailChannel) != withdrawn {
		t.Fatalf("after the unmerge: keeper %v, dupe %v; want the keeper's email granted again, the dupe's withdrawn", s.GetConsents(), d.GetConsents())
	}
}

// A withdrawal of the keeper's person heard through another lead still
// merged into it (written on no event of the keeper's, as the keeper
// showed it withdrawn already) keeps the channel withdrawn when the lead
// whose withdrawal the merge carried in is unmerged.
func TestUnmergeRegrantsNothingALeadStillMergedWithdrew(t *testing.T) {
	e := start(t)
	keeper := e.capture(t, lead("keeper6@c.example")).GetLeadId()
	dupe1 := e.capture(t, lead("dupe6a@c.example")).GetLeadId()
	dupe2 := e.capture(t, lead("dupe6b@c.example")).GetLeadId()
	e.setConsent(t, keeper, emailChannel, granted)
	e.setConsent(t, dupe1, emailChannel, withdrawn)
	e.setConsent(t, dupe2, emailChannel, withdrawn)
	for _, d := range []string{dupe1, dupe2} {
		e.merge(t, keeper, d, "same person")
	}
	e.unmerge(t, keeper, dupe1, "two people")
	if s := e.getLead(t, keeper); consentOf(s, emailChannel) != withdrawn {
		t.Fatalf("keeper after unmerging dupe1: %v; want email withdrawn, as dupe2, still merged, has it", s.GetConsents())
	}
	// A lead merged before, whose withdrawal the keeper's person took back
	// since, holds nothing back.
	keeper2 := e.capture(t, lead("keeper7@c.example")).GetLeadId()
	early := e.capture(t, lead("early7@c.example")).GetLeadId()
	other := e.capture(t, lead("other7@c.example")).GetLeadId()
	e.setConsent(t, keeper2, emailChannel, granted)
	e.setConsent(t, early, emailChannel, withdrawn)
	e.setConsent(t, other, emailChannel, withdrawn)
	e.merge(t, keeper2, early, "same person")
	e.setConsent(t, keeper2, emailChannel, granted) // the person opts in again
	e.merge(t, keeper2, other, "same person?")
	e.unmerge(t, keeper2, other, "two people")
	if s := e.getLead(t, keeper2); consentOf(s, emailChannel) != granted {
		t.Fatalf("keeper2 after unmerging the other person: %v; want the opt-in back", s.GetConsents())
	}
}

// A keeper's channel changed after the merge carried a withdrawal in, or
// one it had no word on before, stays as it is after the unmerge: only a
// grant the carried withdrawal replaced comes back.
func TestUnmergeRegrantsOnlyWhatTheMergeReplaced(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	keeper := e.capture(t, lead("keeper5@c.example")).GetLeadId()
	dupe := e.capture(t, lead("dupe5@c.example")).GetLeadId()
	e.setConsent(t, keeper, emailChannel, granted)
	e.setConsent(t, keeper, phoneChannel, granted)
	for _, ch := range []eventv1.ConsentChannel{emailChannel, phoneChannel, smsChannel} {
		e.setConsent(t, dupe, ch, withdrawn)
	}
	e.merge(t, keeper, dupe, "same person")
	// Said since, by whoever: it stands.
	e.setConsent(t, keeper, phoneChannel, granted)
	e.setConsent(t, keeper, phoneChannel, withdrawn)
	e.unmerge(t, keeper, dupe, "two people")
	s := e.getLead(t, keeper)
	if consentOf(s, emailChannel) != granted || consentOf(s, phoneChannel) != withdrawn || consentOf(s, smsChannel) != withdrawn {
		t.Fatalf("keeper after the unmerge: %v; want email granted again, phone and sms withdrawn", s.GetConsents())
	}
	// Unmerging again writes nothing.
	before := e.counts(t)
	if again, err := e.client.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: keeper, AbsorbedLeadId: dupe, Reason: "two people"}); err != nil || !again.GetReplayed() {
		t.Fatalf("unmerging again: %v %v", again, err)
	}
	e.assertCounts(t, before)
}

// A survivor's own withdrawal while merged, of a channel the merge
// withdrew already, is its person's word and stands after the unmerge:
// said by SetConsent or by a form, it is written, not answered as a
// repeat of the withdrawal the merge carried in.
func TestAnOwnWithdrawalWhileMergedOutlastsTheUnmerge(t *testing.T) {
	for _, byForm := range []bool{false, true} {
		e := start(t)
		keeper := e.capture(t, lead("keeper9@c.example")).GetLeadId()
		dupe := e.capture(t, lead("dupe9@c.example")).GetLeadId()
		e.setConsent(t, keeper, emailChannel, granted)
		e.setConsent(t, dupe, emailChannel, withdrawn)
		e.merge(t, keeper, dupe, "same person")
		before := e.counts(t)
		if byForm {
			r := lead("keeper9@c.example")
			r.Consents = []*eventv1.Consent{{Channel: emailChannel, Status: withdrawn}}
			e.capture(t, r)
		} else {
			e.setConsent(t, keeper, emailChannel, withdrawn)
		}
		if !byForm && maps.Equal(e.counts(t), before) {
			t.Fatal("the keeper's own withdrawal while merged wrote nothing")
		}
		e.unmerge(t, keeper, dupe, "two people")
		if got := consentOf(e.getLead(t, keeper), emailChannel); got != withdrawn {
			t.Fatalf("form %v: the keeper's email after the unmerge: %v, want its own withdrawal", byForm, got)
		}
	}
}

// An unmerge gives the absorbed lead back a withdrawal the survivor heard
// while merged (it may have been its person's), not one from before.
func TestUnmergeGivesBackAWithdrawalHeardWhileMerged(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	keeper := e.capture(t, lead("keeper2@c.example")).GetLeadId()
	dupe := e.capture(t, lead("dupe2@c.example")).GetLeadId()
	for _, id := range []string{keeper, dupe} {
		e.setConsent(t, id, emailChannel, granted)
	}
	e.setConsent(t, dupe, phoneChannel, granted)
	e.setConsent(t, keeper, phoneChannel, withdrawn) // the keeper's own, before the merge
	pair := &intakev1.MergeLeadsRequest{SurvivorLeadId: keeper, AbsorbedLeadId: dupe, Reason: "same person?"}
	if _, err := e.client.MergeLeads(ctx, pair); err != nil {
		t.Fatal(err)
	}
	e.setConsent(t, dupe, emailChannel, withdrawn) // sent to the absorbed id: lands on the survivor
	e.setConsent(t, dupe, smsChannel, granted)
	// A third lead merged in later carries its own withdrawal: not the
	// absorbed lead's to take back.
	third := e.capture(t, lead("third2@c.example")).GetLeadId()
	e.setConsent(t, third, smsChannel, withdrawn)
	e.merge(t, keeper, third, "same person")
	unmerge := &intakev1.UnmergeLeadsRequest{SurvivorLeadId: keeper, AbsorbedLeadId: dupe, Reason: "two people"}
	if _, err := e.client.UnmergeLeads(ctx, unmerge); err != nil {
		t.Fatal(err)
	}
	d := e.getLead(t, dupe)
	if consentOf(d, emailChannel) != withdrawn || consentOf(d, phoneChannel) != granted || consentOf(d, smsChannel) == withdrawn {
		t.Fatalf("absorbed lead's consents after the unmerge: %v, want email withdrawn (heard while merged), phone granted, SMS not the third lead's withdrawal", d.GetConsents())
	}
	before := e.counts(t)
	if again, err := e.client.UnmergeLeads(ctx, unmerge); err != nil || !again.GetReplayed() {
		t.Fatalf("unmerging again: %v %v", again, err)
	}
	e.assertCounts(t, before)
}

// A grant sent to the absorbed lead while merged (SetConsent by its id,
// or a form by its identity) is its person's: the unmerge gives it back
// to that lead, and takes it from the survivor, whose person had
// withdrawn (or never said) - the survivor could be texted otherwise.
// The survivor's own grant stays.
func TestUnmergeGivesBackAGrantSentThroughTheAbsorbedLead(t *testing.T) {
	e := start(t)
	keeper := e.capture(t, lead("keeper5@c.example")).GetLeadId()
	dupe := e.capture(t, lead("dupe5@c.example")).GetLeadId()
	e.setConsent(t, keeper, smsChannel, withdrawn)
	e.setConsent(t, keeper, emailChannel, granted)
	e.merge(t, keeper, dupe, "same person?")
	e.setConsent(t, dupe, smsChannel, granted)   // by the absorbed id
	e.setConsent(t, dupe, emailChannel, granted) // the survivor's says so already
	form := lead("dupe5@c.example")              // by the absorbed lead's identity
	form.Consents = []*eventv1.Consent{{Channel: phoneChannel, Status: granted}}
	// Tracking: granted by the absorbed id, then withdrawn by the
	// survivor's: the withdrawal may be either person's, and is later.
	e.setConsent(t, dupe, trackingChannel, granted)
	e.setConsent(t, keeper, trackingChannel, withdrawn)
	if got := e.capture(t, form).GetLeadId(); got != keeper {
		t.Fatalf("a capture of the absorbed identity went to %s, want the survivor %s", got, keeper)
	}
	if k := e.getLead(t, keeper); consentOf(k, smsChannel) != granted || consentOf(k, phoneChannel) != granted {
		t.Fatalf("survivor while merged: %v, want SMS and phone granted", k.GetConsents())
	}
	e.unmerge(t, keeper, dupe, "two people")
	k, d := e.getLead(t, keeper), e.getLead(t, dupe)
	if consentOf(k, smsChannel) != withdrawn || consentOf(k, phoneChannel) != withdrawn || consentOf(k, emailChannel) != granted {
		t.Errorf("survivor after the unmerge: %v, want SMS withdrawn (its own word), phone withdrawn (none of its own), email granted", k.GetConsents())
	}
	if consentOf(d, smsChannel) != granted || consentOf(d, phoneChannel) != granted || consentOf(d, emailChannel) != granted ||
		consentOf(d, trackingChannel) != withdrawn {
		t.Errorf("absorbed lead after the unmerge: %v, want the SMS, phone and email grants its person sent (email: though the survivor's said so), tracking withdrawn since", d.GetConsents())
	}
	// Its LeadUnmerged counts every replay marked as given back, consent
	// changes among them: one not marked left the unmerge unfinished.
	var count, marked uint32
	for _, ev := range e.timeline(t, dupe) {
		if u := ev.GetLeadUnmerged(); u != nil {
			count, marked = u.GetGivenBackCount(), 0
		}
		if keeper == cmp.Or(ev.GetActivityRecorded().GetGivenBackBy(), ev.GetLeadResubmitted().GetGivenBackBy(), ev.GetConsentChanged().GetGivenBackBy()) {
			marked++
		}
	}
	if count == 0 || marked != count {
		t.Errorf("the unmerge counts %d replays, %d are marked given back", count, marked)
	}
	before := e.counts(t)
	e.unmerge(t, keeper, dupe, "two people") // a retry writes nothing
	e.assertCounts(t, before)
}

// The survivor's own grant, sent (without a key) after the same grant
// came through its absorbed lead, is its own word: the unmerge keeps it.
// It was not written (nothing changed), and the unmerge withdrew it.
func TestTheSurvivorsOwnGrantAfterTheAbsorbedLeadsStays(t *testing.T) {
	e := start(t)
	keeper := e.capture(t, lead("keeper6@c.example")).GetLeadId()
	dupe := e.capture(t, lead("dupe6@c.example")).GetLeadId()
	e.merge(t, keeper, dupe, "same person?")
	e.setConsent(t, dupe, emailChannel, granted)
	e.setConsent(t, keeper, emailChannel, granted)
	e.unmerge(t, keeper, dupe, "two people")
	if k, d := e.getLead(t, keeper), e.getLead(t, dupe); consentOf(k, emailChannel) != granted || consentOf(d, emailChannel) != granted {
		t.Errorf("after the unmerge: survivor %v, absorbed %v; want email granted on both", k.GetConsents(), d.GetConsents())
	}
}

// Only an unmerge from the survivor gives its leads' words back: the
// survivor's own unmerge from a lead above it gives nothing back, so a
// withdrawal sent through a lead still merged into it stands after it.
func TestTheSurvivorsOwnUnmergeGivesNothingBack(t *testing.T) {
	e := start(t)
	form := lead("keeper10@c.example")
	form.Consents = []*eventv1.Consent{{Channel: emailChannel, Status: granted}}
	keeper := e.capture(t, form).GetLeadId()
	x := e.capture(t, lead("x10@c.example")).GetLeadId()
	top := e.capture(t, lead("top10@c.example")).GetLeadId()
	d := e.capture(t, lead("d10@c.example")).GetLeadId()
	e.merge(t, keeper, x, "same person?")
	e.setConsent(t, x, emailChannel, withdrawn)
	e.merge(t, top, keeper, "same person?")
	e.unmerge(t, top, keeper, "two people")
	e.merge(t, keeper, d, "same person?")
	e.setConsent(t, d, emailChannel, granted)
	e.unmerge(t, keeper, d, "two people")
	if k := e.getLead(t, keeper); consentOf(k, emailChannel) != withdrawn {
		t.Errorf("survivor after the unmerge: %v, want email withdrawn: x, still merged into it, withdrew it last", k.GetConsents())
	}
}

// A consent change a merged lead's person sent is theirs in an access
// request: the export of that lead lists it, held by the survivor, until
// an unmerge gives it back as the lead's own event.
func TestTheExportOfAMergedLeadHasItsPersonsConsentChanges(t *testing.T) {
	e := start(t)
	keeper := e.capture(t, lead("keeper9@c.example")).GetLeadId()
	dupe := e.capture(t, lead("dupe9@c.example")).GetLeadId()
	e.merge(t, keeper, dupe, "same person?")
	e.setConsent(t, dupe, emailChannel, withdrawn)
	x, err := e.client.ExportLead(ctxT(t), &intakev1.ExportLeadRequest{LeadId: dupe})
	if err != nil {
		t.Fatal(err)
	}
	if cs := x.GetConsentChanges(); len(cs) != 1 || cs[0].GetStoredOn() != keeper || cs[0].GetConsent().GetStatus() != withdrawn ||
		cs[0].GetConsent().GetChannel() != emailChannel {
		t.Fatalf("consent changes of the merged lead's export: %v, want its email withdrawal, stored on %s", cs, keeper)
	}
	e.unmerge(t, keeper, dupe, "two people")
	x, err = e.client.ExportLead(ctxT(t), &intakev1.ExportLeadRequest{LeadId: dupe})
	if err != nil {
		t.Fatal(err)
	}
	var own int
	for _, ev := range x.GetEvents() {
		if c := ev.GetEvent().GetConsentChanged(); c != nil && c.GetConsent().GetStatus() == withdrawn && c.GetGivenBackBy() == keeper {
			own++
		}
	}
	if len(x.GetConsentChanges()) != 0 || own != 1 {
		t.Fatalf("after the unmerge: %d held elsewhere, %d given back among its events; want 0 and 1", len(x.GetConsentChanges()), own)
	}
}

// The survivor's own capture form is its word too: a grant it gave there
// stays when the same grant, sent through the absorbed lead, goes back.
func TestTheSurvivorsGrantOnItsFormStays(t *testing.T) {
	e := start(t)
	form := lead("keeper7@c.example")
	form.Consents = []*eventv1.Consent{{Channel: emailChannel, Status: granted}}
	keeper := e.capture(t, form).GetLeadId()
	dupe := e.capture(t, lead("dupe7@c.example")).GetLeadId()
	e.merge(t, keeper, dupe, "same person?")
	e.setConsent(t, dupe, emailChannel, granted)
	e.unmerge(t, keeper, dupe, "two people")
	if k, d := e.getLead(t, keeper), e.getLead(t, dupe); consentOf(k, emailChannel) != granted || consentOf(d, emailChannel) != granted {
		t.Errorf("after the unmerge: survivor %v, absorbed %v; want email granted on both", k.GetConsents(), d.GetConsents())
	}
}

// Grants two absorbed leads' people sent both go back, in either order of
// the unmerges: the survivor's own withdrawal stands at the end. A grant
// given back by an earlier unmerge is no longer the survivor's word.
func TestGrantsOfTwoAbsorbedLeadsBothGoBack(t *testing.T) {
	for _, dFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "first_granted_unmerged_first", false: "last_granted_unmerged_first"}[dFirst], func(t *testing.T) {
			e := start(t)
			keeper := e.capture(t, lead("keeper8@c.example")).GetLeadId()
			d := e.capture(t, lead("dupe8@c.example")).GetLeadId()
			a := e.capture(t, lead("other8@c.example")).GetLeadId()
			e.setConsent(t, keeper, smsChannel, withdrawn)
			e.merge(t, keeper, d, "same person?")
			e.merge(t, keeper, a, "same person?")
			e.setConsent(t, d, smsChannel, granted)
			e.setConsent(t, a, smsChannel, granted)
			first, second := d, a
			if !dFirst {
				first, second = a, d
			}
			e.unmerge(t, keeper, first, "two people")
			if k := e.getLead(t, keeper); consentOf(k, smsChannel) != granted {
				t.Fatalf("survivor with one grant's lead still merged: %v, want SMS granted", k.GetConsents())
			}
			e.unmerge(t, keeper, second, "two people")
			if k := e.getLead(t, keeper); consentOf(k, smsChannel) != withdrawn {
				t.Errorf("survivor after both unmerges: %v, want SMS withdrawn, its own word", k.GetConsents())
			}
			for _, id := range []string{d, a} {
				if l := e.getLead(t, id); consentOf(l, smsChannel) != granted {
					t.Errorf("lead %s after the unmerges: %v, want the SMS grant its person sent", id, l.GetConsents())
				}
			}
		})
	}
}

// A withdrawal heard while merged goes back even when the survivor was
// granted again since (the grant may be the survivor's person's), and
// down a chain unmerged from the top: what the middle lead was given back
// by its own unmerge goes on to the lead merged into it.
func TestUnmergeGivesBackEveryWithdrawalHeardWhileMerged(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	merge := func(survivor, absorbed string) {
		t.Helper()
		e.merge(t, survivor, absorbed, "same person")
	}
	unmerge := func(survivor, absorbed string) {
		t.Helper()
		e.unmerge(t, survivor, absorbed, "two people")
	}
	granted3 := func(ids ...string) {
		for _, id := range ids {
			e.setConsent(t, id, emailChannel, granted)
		}
	}

	keeper := e.capture(t, lead("keeper3@c.example")).GetLeadId()
	dupe := e.capture(t, lead("dupe3@c.example")).GetLeadId()
	granted3(keeper, dupe)
	merge(keeper, dupe)
	e.setConsent(t, dupe, emailChannel, withdrawn) // on the survivor
	e.setConsent(t, keeper, emailChannel, granted) // the survivor's person, since
	unmerge(keeper, dupe)
	if got := consentOf(e.getLead(t, dupe), emailChannel); got != withdrawn {
		t.Errorf("granted on the survivor since: the absorbed lead's email is %v, want withdrawn", got)
	}

	// A chain unmerged from the top, its middle lead's own email granted,
	// or withdrawn already: the bottom's withdrawal passes through it.
	for _, middleSays := range []eventv1.ConsentStatus{granted, withdrawn} {
		name := middleSays.String()
		top := e.capture(t, lead("top-"+name+"@c.example")).GetLeadId()
		middle := e.capture(t, lead("middle-"+name+"@c.example")).GetLeadId()
		bottom := e.capture(t, lead("bottom-"+name+"@c.example")).GetLeadId()
		granted3(top, bottom)
		e.setConsent(t, middle, emailChannel, middleSays)
		merge(middle, bottom)
		merge(top, middle)
		e.setConsent(t, bottom, emailChannel, withdrawn) // lands on the top
		unmerge(top, middle)
		unmerge(middle, bottom)
		if got := consentOf(e.getLead(t, bottom), emailChannel); got != withdrawn {
			t.Errorf("a chain whose middle's email is %v: the bottom lead's email is %v, want withdrawn", middleSays, got)
		}
	}

	// A change may not pass itself off as a merge's copy, which an
	// unmerge does not give back.
	_, err := e.client.SetConsent(ctx, &intakev1.SetConsentRequest{LeadId: keeper, Source: "merge",
		Consent: &eventv1.Consent{Channel: emailChannel, Status: withdrawn}})
	assertField(t, err, "source")
}

// A withdrawal sent to an absorbed lead is written on its survivor even
// when the survivor had withdrawn that channel already, by SetConsent
// without an idempotency key or by a form: unwritten, an unmerge could not
// give it back, and the absorbed lead's person would be contactable again.
func TestUnmergeGivesBackAWithdrawalTheSurvivorHadAlready(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	keeper := e.capture(t, lead("keeper3@c.example")).GetLeadId()
	dupe := e.capture(t, lead("dupe3@c.example")).GetLeadId()
	for _, id := range []string{keeper, dupe} {
		e.setConsent(t, id, emailChannel, granted)
		e.setConsent(t, id, phoneChannel, granted)
	}
	e.setConsent(t, keeper, emailChannel, withdrawn) // the keeper's own, before the merge
	e.setConsent(t, keeper, phoneChannel, withdrawn)
	pair := &intakev1.MergeLeadsRequest{SurvivorLeadId: keeper, AbsorbedLeadId: dupe, Reason: "same person?"}
	if _, err := e.client.MergeLeads(ctx, pair); err != nil {
		t.Fatal(err)
	}
	e.setConsent(t, dupe, emailChannel, withdrawn) // to the absorbed id, no idempotency key
	form := lead("dupe3@c.example")
	form.Consents = []*eventv1.Consent{{Channel: phoneChannel, Status: withdrawn}}
	if r := e.capture(t, form); r.GetLeadId() != keeper {
		t.Fatalf("the absorbed person's form went to %s, want the survivor %s", r.GetLeadId(), keeper)
	}
	e.unmerge(t, keeper, dupe, "two people")
	if d := e.getLead(t, dupe); consentOf(d, emailChannel) != withdrawn || consentOf(d, phoneChannel) != withdrawn {
		t.Fatalf("absorbed lead's consents after the unmerge: %v, want email and phone withdrawn, as its person asked while merged", d.GetConsents())
	}
}

// The refusal to erase a lead deep in a chain names the lead to erase:
// the chain's top, not the next lead up, which is merged too.
func TestErasingAChainsBottomNamesItsTop(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	a := e.capture(t, lead("ca@c.example")).GetLeadId()
	b := e.capture(t, lead("cb@c.example")).GetLeadId()
	c := e.capture(t, lead("cc@c.example")).GetLeadId()
	for _, m := range [][2]string{{a, b}, {c, a}} {
		e.merge(t, m[0], m[1], "x")
	}
	before := e.counts(t)
	_, err := e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: b, Reason: "request"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "merged into "+a) || !strings.Contains(err.Error(), "erase "+c) {
		t.Fatalf("erasing the bottom of a chain: %v, want FailedPrecondition naming %s to erase", err, c)
	}
	e.assertCounts(t, before)
}

// A submission whose key never reached the vault opens for nobody; an
// erasure goes on without it rather than failing for good.
func TestErasureGoesOnPastASubmissionWithoutItsKey(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	id := e.capture(t, lead("lost@k.example")).GetLeadId()
	k, err := e.vault(t).NewKey(id) // never stored
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal([]byte{})
	if err != nil {
		t.Fatal(err)
	}
	tl := e.timeline(t, id)
	e.appendRaw(t, &eventv1.Event{LeadId: id, EventType: "LeadResubmitted", Lifecycle: tl[len(tl)-1].GetLifecycle(),
		Payload: &eventv1.Event_LeadResubmitted{LeadResubmitted: &eventv1.LeadResubmitted{SealedPersonal: sealed, MatchedBy: "email"}}})
	if _, err := e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: id, Reason: "request"}); err != nil {
		t.Fatalf("erasing a lead with a submission whose key is lost: %v", err)
	}
	if got := e.getLead(t, id); got.GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ERASED {
		t.Fatalf("lead is %v, want ERASED", got.GetLifecycle().GetStatus())
	}
	// Its first submission's email was released: the person is new again.
	if again := e.capture(t, lead("lost@k.example")); again.GetLeadId() == id || again.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
		t.Fatalf("capture after the erasure: %v, want a new lead", again)
	}
}

// An erasure says why: the reason is part of the record a regulator asks
// for. Without one it is refused, naming the field, and writes nothing.
func TestErasureNeedsAReason(t *testing.T) {
	e := start(t)
	id := e.capture(t, lead("why@c.example")).GetLeadId()
	before := e.counts(t)
	for _, reason := range []string{"", "   "} {
		_, err := e.client.EraseLead(ctxT(t), &intakev1.EraseLeadRequest{LeadId: id, Reason: reason})
		assertField(t, err, "reason")
	}
	e.assertCounts(t, before)
}

// So do a merge and an unmerge: a blank reason is no reason, refused on
// the field, not stored (a merge) or refused deep in the lifecycle with
// no field named (an unmerge).
func TestMergeAndUnmergeNeedAReason(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	a := e.capture(t, lead("blank-a@c.example")).GetLeadId()
	b := e.capture(t, lead("blank-b@c.example")).GetLeadId()
	before := e.counts(t)
	_, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: a, AbsorbedLeadId: b, Reason: "   "})
	assertField(t, err, "reason")
	// A reason naming the person (kept in the clear after an erasure).
	_, err = e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: a, AbsorbedLeadId: b, Reason: "dup of blank-b@c.example"})
	assertField(t, err, "reason")
	e.assertCounts(t, before)
	e.merge(t, a, b, "same person")
	before = e.counts(t)
	_, err = e.client.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: a, AbsorbedLeadId: b, Reason: " "})
	assertField(t, err, "reason")
	_, err = e.client.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: a, AbsorbedLeadId: b, Reason: "blank-b@c.example is another person"})
	assertField(t, err, "reason")
	e.assertCounts(t, before)
}

// A capture that finds one of its identities held by a lead whose first
// event is not stored yet (a person captured again after an erasure:
// their email is claimed for the new lead first) waits for that event,
// then records the two as a merge candidate; skipped, one person would
// be two leads with nothing saying so.
func TestACandidateWhoseLeadIsBeingCreatedIsRecorded(t *testing.T) {
	n := testenv.StartNATS(t)
	reached, gate := make(chan string, 1), make(chan struct{})
	var armed atomic.Bool
	cfg := Config{Addr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second}
	cfg.crashPoints = func(p app.CrashPoint, lead string) {
		if p == app.AfterClaims && armed.CompareAndSwap(true, false) {
			reached <- lead
			<-gate
		}
	}
	e := startWith(t, n, cfg)
	ctx := ctxT(t)
	first := e.capture(t, lead("again@c.example")).GetLeadId()
	if _, err := e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: first, Reason: "access request"}); err != nil {
		t.Fatal(err)
	}
	crm := e.capture(t, withExt(lead("crm@c.example"), "crm-9")).GetLeadId()

	armed.Store(true)
	again := make(chan *intakev1.CaptureLeadResponse, 1)
	go func() {
		r, err := e.client.CaptureLead(ctx, lead("again@c.example"))
		if err != nil {
			t.Error(err)
		}
		again <- r
	}()
	fresh := <-reached // its email claimed, its event not stored
	time.AfterFunc(100*time.Millisecond, func() { close(gate) })
	if r := e.capture(t, withExt(lead("again@c.example"), "crm-9")); r.GetLeadId() != crm {
		t.Fatalf("the form with both identities went to %s, want the external id's lead %s", r.GetLeadId(), crm)
	}
	if r := <-again; r.GetLeadId() != fresh || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
		t.Fatalf("the person captured again: %v, want the new lead %s", r, fresh)
	}
	var found bool
	for _, ev := range e.timeline(t, crm) {
		found = found || ev.GetMergeCandidateFound().GetOtherLeadId() == fresh
	}
	if !found {
		t.Fatalf("no merge candidate between %s (the external id's) and %s (the email's)", crm, fresh)
	}
}

// merge merges absorbed into survivor, failing the test on an error.
func (e *env) merge(t *testing.T, survivor, absorbed, reason string) {
	t.Helper()
	if _, err := e.client.MergeLeads(ctxT(t), &intakev1.MergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: reason}); err != nil {
		t.Fatal(err)
	}
}

// unmerge unmerges absorbed from survivor, failing the test on an error.
func (e *env) unmerge(t *testing.T, survivor, absorbed, reason string) {
	t.Helper()
	if _, err := e.client.UnmergeLeads(ctxT(t), &intakev1.UnmergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: reason}); err != nil {
		t.Fatal(err)
	}
}

// After an unmerge, the survivor's export (its person's access request)
// holds nothing the other person sent while merged: not their form, their
// activity or their consent change among its events, nor what scoring
// knew of them on its LeadMerged. Both timelines still show the merge
// and the unmerge, and the other person's export has what they sent.
func TestASurvivorsExportAfterAnUnmergeHoldsNothingOfTheOtherPerson(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	b := e.capture(t, lead("keeper@keep.example")).GetLeadId()
	other := func() *intakev1.CaptureLeadRequest {
		r := lead("other@othercorp.example")
		r.Profile.Industry, r.Profile.Country = "veterinary clinics", "NZ"
		return r
	}
	a := e.capture(t, other()).GetLeadId()
	e.merge(t, b, a, "looked alike")
	e.capture(t, other())
	if _, err := e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: a, ActivityId: "other-visit",
		Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT, Detail: "pricing page"}); err != nil {
		t.Fatal(err)
	}
	e.setConsent(t, a, smsChannel, withdrawn)
	e.unmerge(t, b, a, "two people")

	x, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: b})
	if err != nil {
		t.Fatal(err)
	}
	var merged, unmerged bool
	for _, en := range x.GetEvents() {
		ev := en.GetEvent()
		if ev.GetLeadResubmitted() != nil || ev.GetActivityRecorded() != nil || ev.GetConsentChanged().GetMergedFrom() != "" {
			t.Errorf("the survivor's export holds the other person's %s", ev.GetEventType())
		}
		merged = merged || ev.GetLeadMerged() != nil
		unmerged = unmerged || ev.GetLeadUnmerged() != nil
	}
	if !merged || !unmerged {
		t.Errorf("the survivor's export lost its merge (%v) or unmerge (%v)", merged, unmerged)
	}
	if s := prototext.Format(x); strings.Contains(s, "veterinary") || strings.Contains(s, "othercorp") {
		t.Errorf("the survivor's export names the other person's industry or email domain:\n%s", s)
	}
	y, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: a})
	if err != nil {
		t.Fatal(err)
	}
	if len(y.GetActivities()) != 1 || y.GetActivities()[0].GetDetail() != "pricing page" || len(y.GetSubmissions()) != 2 {
		t.Errorf("the other person's export: %d activities %v, %d submissions; want their visit and both forms",
			len(y.GetActivities()), y.GetActivities(), len(y.GetSubmissions()))
	}
}

// An unmerge of a lead erased with its survivor says so, not that the
// lead is not merged into it: its last merge is into that survivor.
func TestUnmergeOfALeadErasedWithItsSurvivor(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	b := e.capture(t, lead("keeper@gone.example")).GetLeadId()
	a := e.capture(t, lead("other@gone.example")).GetLeadId()
	e.merge(t, b, a, "looked alike")
	if _, err := e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: b, Reason: "ticket 12"}); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: b, AbsorbedLeadId: a, Reason: "two people"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "erased while merged into "+b) {
		t.Fatalf("unmerge after the survivor's erasure: %v, want FAILED_PRECONDITION saying it was erased while merged", err)
	}
}

// A grant the absorbed lead's person sent while merged, which its unmerge
// does not replay on it (the survivor's person withdrew the channel
// after), stays on the survivor's stream alone: the absorbed lead's
// export still lists it, stored on the survivor, and the survivor's
// export does not.
func TestAnUnmergedLeadsExportHoldsTheGrantLeftOnItsSurvivor(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	b := e.capture(t, lead("keeper@left.example")).GetLeadId()
	a := e.capture(t, lead("other@left.example")).GetLeadId()
	e.merge(t, b, a, "looked alike")
	e.setConsent(t, a, emailChannel, granted)   // a's person, through a
	e.setConsent(t, b, emailChannel, withdrawn) // b's person
	e.unmerge(t, b, a, "two people")
	x, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: a})
	if err != nil {
		t.Fatal(err)
	}
	var grants int
	for _, c := range x.GetConsentChanges() {
		if c.GetConsent().GetChannel() == emailChannel && c.GetConsent().GetStatus() == granted && c.GetStoredOn() == b {
			grants++
		}
	}
	for _, en := range x.GetEvents() {
		if c := en.GetEvent().GetConsentChanged(); c.GetConsent().GetChannel() == emailChannel && c.GetConsent().GetStatus() == granted {
			grants++
		}
	}
	if grants != 1 {
		t.Fatalf("the unmerged lead's export lists its email grant %d times, want once (stored on %s): %v", grants, b, x.GetConsentChanges())
	}
	y, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: b})
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range y.GetEvents() {
		if en.GetEvent().GetConsentChanged().GetMergedFrom() == a {
			t.Fatalf("the survivor's export holds the other person's consent change: %v", en.GetEvent())
		}
	}
}

// Down a chain too: c merged into a, a into b, c's person grants email
// (stored on b through c) and b's person withdraws it after. The unmerge
// of a from b does not replay the grant; c's export lists it, stored on
// b, once.
func TestAGrantLeftOnASurvivorThroughAChainIsInItsPersonsExport(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	b := e.capture(t, lead("keeper@chain.example")).GetLeadId()
	a := e.capture(t, lead("mid@chain.example")).GetLeadId()
	c := e.capture(t, lead("deep@chain.example")).GetLeadId()
	e.merge(t, a, c, "looked alike")
	e.merge(t, b, a, "looked alike")
	e.setConsent(t, c, emailChannel, granted)
	e.setConsent(t, b, emailChannel, withdrawn)
	e.unmerge(t, b, a, "two people")
	grants := func(x *intakev1.ExportLeadResponse) (n int) {
		for _, cc := range x.GetConsentChanges() {
			if cc.GetConsent().GetChannel() == emailChannel && cc.GetConsent().GetStatus() == granted && cc.GetStoredOn() == b {
				n++
			}
		}
		return n
	}
	x, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: c})
	if err != nil {
		t.Fatal(err)
	}
	if n := grants(x); n != 1 {
		t.Fatalf("c's export lists its person's email grant, stored on b, %d times, want once: %v", n, x.GetConsentChanges())
	}
	y, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: a})
	if err != nil {
		t.Fatal(err)
	}
	if len(y.GetAbsorbed()) != 1 || grants(y.GetAbsorbed()[0]) != 1 || grants(y) != 0 {
		t.Fatalf("a's export: %d of its own, absorbed %v; want c's grant once, under c", grants(y), y.GetAbsorbed())
	}
}

// A change sent while the lead was merged straight into the survivor is
// not counted again under another lead's unmerge from it: c, merged into
// b itself beside a, grants email; c's unmerge gives it back; a's later
// unmerge from b gave nothing of c's, so c's export does not list the
// grant as left on b.
func TestAChangeGivenBackIsNotLeftOnTheSurvivorUnderAnotherUnmerge(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	b := e.capture(t, lead("keeper@win.example")).GetLeadId()
	a := e.capture(t, lead("mid@win.example")).GetLeadId()
	c := e.capture(t, lead("deep@win.example")).GetLeadId()
	e.merge(t, a, c, "looked alike")
	e.merge(t, b, a, "looked alike")
	e.unmerge(t, b, a, "not yet")
	e.unmerge(t, a, c, "not yet")
	e.merge(t, b, a, "again")
	e.merge(t, b, c, "directly")
	e.setConsent(t, c, emailChannel, granted)
	e.unmerge(t, b, c, "two people")
	e.unmerge(t, b, a, "two people")
	x, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: c})
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range x.GetConsentChanges() {
		if cc.GetConsent().GetChannel() == emailChannel && cc.GetStoredOn() == b {
			t.Fatalf("c's export lists its grant as left on b, though its unmerge gave it back: %v", x.GetConsentChanges())
		}
	}
	var replayed bool
	for _, en := range x.GetEvents() {
		c := en.GetEvent().GetConsentChanged()
		replayed = replayed || c.GetConsent().GetChannel() == emailChannel && c.GetConsent().GetStatus() == granted && c.GetGivenBackBy() == b
	}
	if !replayed {
		t.Fatalf("c's grant was not replayed on it: the test shows nothing")
	}
}
