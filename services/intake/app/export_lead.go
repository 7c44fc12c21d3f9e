package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/form"
)

// Export is everything held about a lead, decrypted.
type Export struct {
	View        LeadView
	Submissions []ExportedSubmission
	Activities  []ExportedActivity
	Events      []TimelineEntry
	Notes       []ExportedNote
	// ConsentChanges are those its person, or a merged lead's, sent while
	// it was merged, which a survivor up the chain holds (its own are
	// among Events).
	ConsentChanges []ExportedConsentChange
	// Absorbed are the exports of the leads merged into this one.
	Absorbed []Export
}

// ExportedNote is sealed free text of an event that is neither a
// submission nor an activity (a rep's note), opened.
type ExportedNote struct {
	Seq        uint64
	OccurredAt time.Time
	EventType  string
	Field      string
	Actor      *eventv1.Actor
	Text       string
}

// ExportedSubmission is one form fill, its personal fields opened (nil
// once the lead is erased).
type ExportedSubmission struct {
	Seq         uint64
	OccurredAt  time.Time
	EventType   string
	Personal    *eventv1.Personal
	Profile     *eventv1.Profile
	Attribution *eventv1.Attribution
	Consents    []*eventv1.Consent
	// StoredOn is the survivor whose events hold it, when it came through
	// the exported lead while merged; "" for the lead's own.
	StoredOn string
}

// ExportedActivity is one engagement signal, its detail opened.
type ExportedActivity struct {
	Seq        uint64
	OccurredAt time.Time
	ActivityID string
	Type       eventv1.ActivityType
	CampaignID string
	Detail     string
	StoredOn   string // as in ExportedSubmission
}

// ExportedConsentChange is a consent change sent through a merged lead.
type ExportedConsentChange struct {
	Seq        uint64
	OccurredAt time.Time
	Consent    *eventv1.Consent
	Source     string
	StoredOn   string
}

// ExportLead returns everything held about a lead for an access request:
// its current view, every submission and activity with their personal
// fields opened, its whole history as stored, and the same of each lead
// merged into it (merge chains are at most maxMergeDepth long).
//
// What an unmerge cut off still owes the lead (FinishUnmerge) is its
// person's too: it is written first.
//
// Errors: *ValidationError, ErrNotFound, those of FinishUnmerge's writes.
func (a *App) ExportLead(ctx context.Context, leadID string) (Export, error) {
	var v form.Violations
	form.LeadID(&v, "lead_id", leadID)
	if err := invalid(v); err != nil {
		return Export{}, err
	}
	if err := a.FinishUnmerge(ctx, leadID); err != nil {
		return Export{}, err
	}
	return a.exportLead(ctx, leadID, 0)
}

func (a *App) exportLead(ctx context.Context, leadID string, depth int) (Export, error) {
	view, err := a.GetLead(ctx, leadID)
	if err != nil {
		return Export{}, err
	}
	out, err := a.exportOne(ctx, leadID, view)
	if err != nil {
		return Export{}, err
	}
	if depth < maxMergeDepth {
		for _, id := range view.Absorbed {
			x, err := a.exportLead(ctx, id, depth+1)
			if err != nil {
				return Export{}, fmt.Errorf("lead %s merged into %s: %w", id, leadID, err)
			}
			out.Absorbed = append(out.Absorbed, x)
		}
	}
	if depth == 0 && view.MergedInto != "" && !view.Erased {
		// Merged: what its person, or the person of a lead merged into
		// it, sent since is on the survivors above it, sealed with the
		// key of the lead it came through. (What is on this lead and the
		// ones below it, their own exports hold.)
		family := map[string]bool{}
		familyOf(leadID, out, family)
		if err := a.exportVia(ctx, family, view.MergedInto, &out); err != nil {
			return Export{}, err
		}
	}
	return out, nil
}

// familyOf adds to into id and the leads merged into it, as x, id's
// export, lists them.
func familyOf(id string, x Export, into map[string]bool) {
	into[id] = true
	for i, sub := range x.Absorbed {
		familyOf(x.View.Absorbed[i], sub, into)
	}
}

// exportOne is the export of one lead, without the leads merged into it
// and without what an unmerge gave back.
func (a *App) exportOne(ctx context.Context, leadID string, view LeadView) (Export, error) {
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return Export{}, err
	}
	// The view came from the same events, possibly fewer: fold what was
	// loaded now.
	_, subs := fold(leadID, recs)
	out := Export{View: view}
	// away are the events an unmerge gave back to another lead: that
	// person's, in their export, not in this one's events either.
	away := map[uint64]bool{}
	for _, sub := range subs {
		if sub.gone {
			back, err := a.sealedFor(ctx, sub.via, sub.sealed)
			if err != nil {
				return Export{}, err
			}
			if back {
				away[sub.rec.Seq] = true
				continue // its person's export has it
			}
		}
		es := exportedSubmission(sub)
		if !view.Erased {
			p, err := a.openPersonal(ctx, leadID, sub)
			// One that came through a merged lead is gone with that
			// lead's erasure, after an unmerge.
			if err != nil && !errors.Is(err, vault.ErrNoKey) && !(sub.via != "" && errors.Is(err, vault.ErrShredded)) {
				return Export{}, err
			}
			es.Personal = p
		}
		out.Submissions = append(out.Submissions, es)
	}
	held, err := a.heldActivities(ctx, leadID, recs)
	if err != nil {
		return Export{}, err
	}
	kept := map[uint64]bool{}
	for _, r := range held {
		kept[r.Seq] = true
		act := r.Event.GetActivityRecorded()
		detail, err := a.openDetail(ctx, leadID, r, act, view.Erased)
		if err != nil {
			return Export{}, err
		}
		out.Activities = append(out.Activities, exportedActivity(r, act, detail))
	}
	for _, r := range heldConsents(leadID, recs) {
		kept[r.Seq] = true
	}
	for i, r := range recs {
		if mergedFrom(r.Event) != "" && !kept[r.Seq] && r.Event.GetLeadResubmitted() == nil {
			away[r.Seq] = true // an activity or consent change given back
		}
		if away[r.Seq] {
			continue
		}
		if m := r.Event.GetLeadMerged(); m.GetSurvivorLeadId() == leadID && unmergedAfter(recs[i+1:], leadID, m.GetAbsorbedLeadId()) {
			// What scoring knew of the other person at the merge.
			ev := proto.CloneOf(r.Event)
			em := ev.GetLeadMerged()
			em.AbsorbedProfile, em.AbsorbedActivities, em.AbsorbedWithdrawn = nil, nil, nil
			r.Event = ev
		}
		out.Events = append(out.Events, TimelineEntry{Record: r, Summary: Summarize(r.Event)})
		if !view.Erased {
			notes, err := a.openNotes(ctx, leadID, r)
			if err != nil {
				return Export{}, err
			}
			out.Notes = append(out.Notes, notes...)
		}
	}
	left, err := a.leftOnSurvivors(ctx, leadID, recs)
	if err != nil {
		return Export{}, err
	}
	out.ConsentChanges = append(out.ConsentChanges, left...)
	return out, nil
}

// leftOnSurvivors are the consent changes leadID's person sent while it
// was merged, directly or through a lead it was merged into, that an
// unmerge did not replay (a grant a withdrawal heard after it would have
// undone): they stay on the survivor's stream alone, and are still this
// person's word. Each unmerge of X (leadID, or a lead it was merged into,
// or that one's) from S gives back what came through leadID while X was
// merged into S; a replay on X copies its change's channel, status and
// time, names S in given_back_by, and keeps merged_from leadID when X is
// another lead.
func (a *App) leftOnSurvivors(ctx context.Context, leadID string, recs []eventstore.Record) ([]ExportedConsentChange, error) {
	type word struct {
		ch eventv1.ConsentChannel
		st eventv1.ConsentStatus
		at int64
	}
	wordOf := func(r eventstore.Record) word {
		c := r.Event.GetConsentChanged().GetConsent()
		return word{c.GetChannel(), c.GetStatus(), r.Event.GetOccurredAt().AsTime().UnixNano()}
	}
	// The leads leadID was ever merged into, and theirs, with their events.
	loaded := map[string][]eventstore.Record{leadID: recs}
	load := func(id string) ([]eventstore.Record, error) {
		if r, ok := loaded[id]; ok {
			return r, nil
		}
		r, err := a.leads.Load(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("lead %s, once merged with %s: %w", id, leadID, err)
		}
		loaded[id] = r
		return r, nil
	}
	chain := []string{leadID}
	for i := 0; i < len(chain) && len(chain) <= maxHops; i++ {
		xr, err := load(chain[i])
		if err != nil {
			return nil, err
		}
		for _, r := range xr {
			if m := r.Event.GetLeadMerged(); m.GetAbsorbedLeadId() == chain[i] && !slices.Contains(chain, m.GetSurvivorLeadId()) {
				chain = append(chain, m.GetSurvivorLeadId())
			}
		}
	}
	var out []ExportedConsentChange
	for _, x := range chain {
		xr := loaded[x]
		keep := leadID
		if x == leadID {
			keep = ""
		}
		var from []string // the survivors x was unmerged from, giving leadID's back
		for _, r := range xr {
			if u := r.Event.GetLeadUnmerged(); u.GetAbsorbedLeadId() == x && (x == leadID || slices.Contains(u.GetGivenBackVia(), leadID)) &&
				!slices.Contains(from, u.GetSurvivorLeadId()) {
				from = append(from, u.GetSurvivorLeadId())
			}
		}
		for _, sv := range from {
			replayed := map[word]int{}
			for _, r := range xr {
				if c := r.Event.GetConsentChanged(); c.GetGivenBackBy() == sv && c.GetMergedFrom() == keep {
					replayed[wordOf(r)]++
				}
			}
			sr, err := load(sv)
			if err != nil {
				return nil, err
			}
			// Only what came while x was merged into sv, in windows an
			// unmerge closed: an open one the survivor still holds
			// (exportVia).
			var window []eventstore.Record
			for _, r := range sr {
				switch {
				case r.Event.GetLeadMerged().GetAbsorbedLeadId() == x && r.Event.GetLeadMerged().GetSurvivorLeadId() == sv:
					window = []eventstore.Record{}
				case r.Event.GetLeadUnmerged().GetAbsorbedLeadId() == x && r.Event.GetLeadUnmerged().GetSurvivorLeadId() == sv:
					if x != leadID && !slices.Contains(r.Event.GetLeadUnmerged().GetGivenBackVia(), leadID) {
						// leadID was not under x then (merged into sv
						// itself, say): this unmerge gave nothing of its back.
						window = nil
						continue
					}
					for _, w := range window {
						if replayed[wordOf(w)] > 0 {
							replayed[wordOf(w)]--
							continue
						}
						c := w.Event.GetConsentChanged()
						out = append(out, ExportedConsentChange{Seq: w.Seq, OccurredAt: w.Event.GetOccurredAt().AsTime(), Consent: c.GetConsent(),
							Source: c.GetSource(), StoredOn: sv})
					}
					window = nil
				case window != nil && r.Event.GetConsentChanged().GetMergedFrom() == leadID:
					window = append(window, r)
				}
			}
		}
	}
	return out, nil
}

// mergedFrom is the merged lead an activity or a consent change came
// through, if any.
func mergedFrom(ev *eventv1.Event) string {
	return cmp.Or(ev.GetActivityRecorded().GetMergedFrom(), ev.GetConsentChanged().GetMergedFrom())
}

// unmergedAfter reports whether recs, the survivor's events after a
// merge, hold the unmerge of absorbed.
func unmergedAfter(recs []eventstore.Record, survivor, absorbed string) bool {
	return slices.ContainsFunc(recs, func(r eventstore.Record) bool {
		u := r.Event.GetLeadUnmerged()
		return u.GetSurvivorLeadId() == survivor && u.GetAbsorbedLeadId() == absorbed
	})
}

// sealedFor reports whether sealed data opens with via's key (or is
// none, or via's keys are shredded): what an unmerge gives back to via,
// stored since 2026-12-05; one sealed with the survivor's key stayed with
// it. An error that says neither (the vault out of reach) is returned:
// an export must not leave the item out as given back.
func (a *App) sealedFor(ctx context.Context, via string, sealed []byte) (bool, error) {
	if len(sealed) == 0 {
		return true, nil
	}
	_, err := a.keys.Open(ctx, via, sealed)
	switch {
	case err == nil, errors.Is(err, vault.ErrShredded):
		return true, nil
	case errors.Is(err, vault.ErrCorrupt), errors.Is(err, vault.ErrNoKey):
		return false, nil
	}
	return false, err
}

// heldActivities are the ActivityRecorded events of recs, leadID's
// history, that no unmerge gave back: one whose detail is sealed with
// the survivor's key (older) stayed with it, as for submissions.
func (a *App) heldActivities(ctx context.Context, leadID string, recs []eventstore.Record) ([]eventstore.Record, error) {
	var out []eventstore.Record
	var failed error
	for _, r := range recs {
		if u := r.Event.GetLeadUnmerged(); u != nil && u.GetSurvivorLeadId() == leadID {
			out = slices.DeleteFunc(out, func(x eventstore.Record) bool {
				act := x.Event.GetActivityRecorded()
				if !envelope.GivenBack(u, act.GetMergedFrom()) {
					return false
				}
				back, err := a.sealedFor(ctx, act.GetMergedFrom(), act.GetSealedDetail())
				failed = cmp.Or(failed, err)
				return back
			})
		}
		if r.Event.GetActivityRecorded() != nil {
			out = append(out, r)
		}
	}
	return out, failed
}

// exportVia adds to out what each survivor up the chain from into holds
// that came through a lead of family and was not given back.
func (a *App) exportVia(ctx context.Context, family map[string]bool, into string, out *Export) error {
	return a.upTheChain(ctx, into, func(lead string, recs []eventstore.Record, subs []submission) error {
		for _, sub := range subs {
			if sub.via == "" || !family[sub.via] || sub.gone {
				continue
			}
			es := exportedSubmission(sub)
			p, err := a.openPersonal(ctx, lead, sub)
			// Gone with the erasure of the lead it came through (one
			// merged into the exported lead, erased by a survivor's
			// erasure that was cut short).
			if err != nil && !errors.Is(err, vault.ErrNoKey) && !errors.Is(err, vault.ErrShredded) {
				return err
			}
			es.Personal, es.StoredOn = p, lead
			out.Submissions = append(out.Submissions, es)
		}
		held, err := a.heldActivities(ctx, lead, recs)
		if err != nil {
			return err
		}
		for _, r := range held {
			act := r.Event.GetActivityRecorded()
			if act.GetMergedFrom() == "" || !family[act.GetMergedFrom()] {
				continue
			}
			detail, err := a.openDetail(ctx, lead, r, act, false)
			if err != nil {
				return err
			}
			x := exportedActivity(r, act, detail)
			x.StoredOn = lead
			out.Activities = append(out.Activities, x)
		}
		for _, r := range heldConsents(lead, recs) {
			if c := r.Event.GetConsentChanged(); family[c.GetMergedFrom()] {
				out.ConsentChanges = append(out.ConsentChanges, ExportedConsentChange{Seq: r.Seq, OccurredAt: r.Event.GetOccurredAt().AsTime(),
					Consent: c.GetConsent(), Source: c.GetSource(), StoredOn: lead})
			}
		}
		return nil
	})
}

// heldConsents are the ConsentChanged events of recs, leadID's history,
// sent through a lead merged into it (merged_from) that no unmerge gave
// back since.
func heldConsents(leadID string, recs []eventstore.Record) []eventstore.Record {
	var out []eventstore.Record
	for _, r := range recs {
		if u := r.Event.GetLeadUnmerged(); u != nil && u.GetSurvivorLeadId() == leadID {
			out = slices.DeleteFunc(out, func(x eventstore.Record) bool {
				return envelope.GivenBack(u, x.Event.GetConsentChanged().GetMergedFrom())
			})
		}
		if c := r.Event.GetConsentChanged(); c.GetMergedFrom() != "" {
			out = append(out, r)
		}
	}
	return out
}

// upTheChain calls fn with each lead from into up the chain of merges to
// the survivor at its top, with the lead's events and their submissions.
func (a *App) upTheChain(ctx context.Context, into string, fn func(lead string, recs []eventstore.Record, subs []submission) error) error {
	lead := into
	for range maxHops {
		recs, err := a.leads.Load(ctx, lead)
		if err != nil {
			return err
		}
		view, subs := fold(lead, recs)
		if err := fn(lead, recs, subs); err != nil {
			return err
		}
		if view.MergedInto == "" {
			return nil
		}
		lead = view.MergedInto
	}
	return fmt.Errorf("lead %s: more than %d merges in a row", into, maxHops)
}

// exportedActivity is act, stored at r, with its detail opened.
func exportedActivity(r eventstore.Record, act *eventv1.ActivityRecorded, detail string) ExportedActivity {
	return ExportedActivity{Seq: r.Seq, OccurredAt: r.Event.GetOccurredAt().AsTime(),
		ActivityID: act.GetActivityId(), Type: act.GetType(), CampaignID: act.GetCampaignId(), Detail: detail}
}

// exportedSubmission is sub without its personal fields.
func exportedSubmission(sub submission) ExportedSubmission {
	return ExportedSubmission{Seq: sub.rec.Seq, OccurredAt: sub.rec.Event.GetOccurredAt().AsTime(), EventType: sub.rec.Event.GetEventType(),
		Profile: sub.profile, Attribution: sub.attribution, Consents: sub.consents}
}

// openNotes opens the sealed text fields of r's payload that are not a
// submission's or an activity's (exported with those): what other
// services sealed, such as a rep's rejection note.
func (a *App) openNotes(ctx context.Context, leadID string, r eventstore.Record) ([]ExportedNote, error) {
	var out []ExportedNote
	var err error
	eachSealed(r.Event.ProtoReflect(), func(name string, b []byte) bool {
		if exportedElsewhere[name] || len(b) == 0 {
			return true
		}
		plain, oerr := a.keys.Open(ctx, leadID, b)
		switch {
		case errors.Is(oerr, vault.ErrShredded), errors.Is(oerr, vault.ErrNoKey):
			return true // erased meanwhile, or not the lead's: nothing to show
		case oerr != nil:
			err = fmt.Errorf("open %s of %s at %d: %w", name, r.Event.GetEventType(), r.Seq, oerr)
			return false
		}
		out = append(out, ExportedNote{Seq: r.Seq, OccurredAt: r.Event.GetOccurredAt().AsTime(), EventType: r.Event.GetEventType(),
			Field: name, Actor: r.Event.GetActor(), Text: string(plain)})
		return true
	})
	return out, err
}

// exportedElsewhere are the sealed fields an export shows as submissions
// and activities.
var exportedElsewhere = map[string]bool{"sealed_personal": true, "sealed_contact": true, "sealed_detail": true}

// openDetail is an activity's detail: sealed in newer events, in the
// clear in older ones.
func (a *App) openDetail(ctx context.Context, leadID string, r eventstore.Record, act *eventv1.ActivityRecorded, erased bool) (string, error) {
	if len(act.GetSealedDetail()) == 0 {
		return act.GetDetail(), nil
	}
	if erased {
		return "", nil
	}
	plain, err := a.keys.OpenVia(ctx, leadID, act.GetMergedFrom(), act.GetSealedDetail())
	if act.GetMergedFrom() != "" && errors.Is(err, vault.ErrShredded) {
		return "", nil // gone with the merged lead's erasure, after an unmerge
	}
	if err != nil {
		return "", fmt.Errorf("open activity detail at %d: %w", r.Seq, err)
	}
	return string(plain), nil
}
