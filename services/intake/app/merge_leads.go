package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/form"
)

// MergeLeads names the two leads of a merge or unmerge.
type MergeLeads struct {
	Survivor string
	Absorbed string
	Reason   string
	Actor    *eventv1.Actor
}

// Merged is the answer to a merge or unmerge: both leads' versions.
type Merged struct {
	Survivor uint64
	Absorbed uint64
	Replayed bool
}

// MergeLeads merges one lead into another: the absorbed lead records
// LeadMerged and becomes MERGED (the shared state machine's Merge), the
// survivor records LeadMerged too and stays as it is, both in one atomic
// commit. Nothing is re-pointed: the absorbed lead's claims stay, and a
// capture that finds one follows the merge to the survivor, so an unmerge
// has no claim to put back. Only consent withdrawals are copied: a channel
// withdrawn on the absorbed lead is withdrawn on the survivor in the same
// commit (and one the survivor heard while merged goes back with an
// unmerge). Merging again is a no-op.
//
// Errors: *ValidationError, ErrNotFound, lifecycle.ErrRefused (a
// terminal absorbed lead, one a rep holds (ASSIGNED, ACCEPTED), an MQL
// merged into a lead that is not an MQL, in sales or won, one with an
// open opportunity or with merges
// below it as deep as a capture follows, or whose unmerge is still
// giving it back what came through it, a merged or erased survivor, or
// one whose unmerge is),
// eventstore.ErrConflict after repeated races.
func (a *App) MergeLeads(ctx context.Context, in MergeLeads, meta envelope.Meta) (Merged, error) {
	if err := checkPair(in); err != nil {
		return Merged{}, err
	}
	// What an unmerge still owes either lead is written first: owed to
	// the survivor and written after the merge, an older word of its
	// person would stand over what the merge carries in.
	for _, lead := range []string{in.Survivor, in.Absorbed} {
		if err := a.FinishUnmerge(ctx, lead); err != nil {
			return Merged{}, err
		}
	}
	meta.Actor = meta.ActorOr(in.Actor)
	payload := &eventv1.LeadMerged{SurvivorLeadId: in.Survivor, AbsorbedLeadId: in.Absorbed, Reason: in.Reason}
	return a.pairCommit(ctx, in, func(sRecs, aRecs []eventstore.Record) (sEvs, aEvs []*eventv1.Event, err error) {
		sState, _ := stateOf(sRecs)
		aState, _ := stateOf(aRecs)
		aHead := aRecs[len(aRecs)-1]
		if m := aHead.Event.GetLeadMerged(); aState.Status == lifecycle.StatusMerged && m.GetSurvivorLeadId() == in.Survivor {
			return nil, nil, nil // merged already
		}
		// Measured on each try: a merge into the absorbed lead moves its
		// head, so the commit below would lose the race and measure again.
		aView, _ := fold(in.Absorbed, aRecs)
		depth, err := a.mergeDepth(ctx, aView.Absorbed, maxMergeDepth)
		if err != nil {
			return nil, nil, err
		}
		if depth+1 > maxMergeDepth {
			return nil, nil, &lifecycle.RefusedError{Command: lifecycle.Merge, Status: aState.Status, Reason: fmt.Sprintf(
				"lead %s has leads merged into it %d deep: absorbed, it would end a chain of more than %d merges, which captures do not follow; merge its leads into the survivor instead",
				in.Absorbed, depth, maxMergeDepth)}
		}
		// Absorbed now, what its unmerge still owes it could go nowhere
		// (an unmerge's first commit that landed since FinishUnmerge);
		// the survivor's would come after what the merge carries in.
		if err := a.refuseOwed(ctx, lifecycle.Merge, in.Absorbed, aState, aRecs); err != nil {
			return nil, nil, err
		}
		if err := a.refuseOwed(ctx, lifecycle.Merge, in.Survivor, sState, sRecs); err != nil {
			return nil, nil, err
		}
		switch aState.Status {
		case lifecycle.StatusOpportunity:
			// A merged lead's deal would leave every report, and the CRM
			// could not close it: sales commands do not follow merges.
			return nil, nil, &lifecycle.RefusedError{Command: lifecycle.Merge, Status: aState.Status,
				Reason: "lead " + in.Absorbed + " has an open opportunity: close it won or lost first, or merge the other way"}
		case lifecycle.StatusAssigned, lifecycle.StatusAccepted:
			// Nor would its rep's accept, attempts and conversion, nor its
			// SLAs: the lead would leave its rep without a word.
			return nil, nil, &lifecycle.RefusedError{Command: lifecycle.Merge, Status: aState.Status,
				Reason: fmt.Sprintf("lead %s is held by %s in sales: have sales reject it first, or merge the other way", in.Absorbed, aState.Owner)}
		case lifecycle.StatusMQL:
			// A survivor sales has not got would take the qualified person
			// out of sales' way: scored on both leads' facts again, it may
			// qualify only under the model active now, and routing starts
			// over.
			if !withSales(sState.Status) {
				return nil, nil, &lifecycle.RefusedError{Command: lifecycle.Merge, Status: aState.Status,
					Reason: fmt.Sprintf("lead %s is an MQL waiting for sales and lead %s is %s: merge %s into %s instead, so the person stays with sales",
						in.Absorbed, in.Survivor, sState.Status, in.Survivor, in.Absorbed)}
			}
		}
		// The table's Merge takes the survivor as its reason, so any
		// reader can follow the merge; the caller's reason is the payload's.
		absorbed, _, err := a.leadEvent(in.Absorbed, aState, lifecycle.Command{Name: lifecycle.Merge, Reason: in.Survivor}, payload, meta, a.now())
		if err != nil {
			return nil, nil, fmt.Errorf("absorbed lead %s: %w", in.Absorbed, err)
		}
		// The survivor's carries what scoring knows of the absorbed lead:
		// it is scored on both leads' facts (pkg/scoring FactsFold).
		var facts scoring.FactsFold
		for _, r := range aRecs {
			facts.Apply(r.Event)
		}
		sPayload := proto.CloneOf(payload)
		facts.Absorbed(sPayload)
		survivor, err := a.factEvent(in.Survivor, sState, sPayload, meta)
		if err != nil {
			return nil, nil, survivorErr(lifecycle.Merge, in.Survivor, err)
		}
		sView, _ := fold(in.Survivor, sRecs)
		withdrawn, err := a.withdrawals(in.Survivor, sState, aView.Consents, sView.Consents, meta)
		if err != nil {
			return nil, nil, survivorErr(lifecycle.Merge, in.Survivor, err)
		}
		return append([]*eventv1.Event{survivor}, withdrawn...), []*eventv1.Event{absorbed}, nil
	})
}

// withdrawals are the ConsentChanged events that carry every channel
// withdrawn in from onto a lead whose own consents (to) do not say so:
// one person's withdrawal must never be lost, whichever of their leads
// heard it. The person can grant again.
func (a *App) withdrawals(leadID string, state lifecycle.State, from, to []*eventv1.Consent, meta envelope.Meta) ([]*eventv1.Event, error) {
	withdrawn := map[eventv1.ConsentChannel]bool{}
	for _, c := range to {
		withdrawn[c.GetChannel()] = c.GetStatus() == eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN
	}
	var out []*eventv1.Event
	for _, c := range from {
		if c.GetStatus() != eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN || withdrawn[c.GetChannel()] {
			continue
		}
		ev, _, err := a.leadEvent(leadID, state, lifecycle.Command{Name: lifecycle.ChangeConsent},
			&eventv1.ConsentChanged{Consent: &eventv1.Consent{Channel: c.GetChannel(), Status: c.GetStatus()}, Source: consentFromMerge}, meta, a.now())
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// regranted gives the survivor back, after its LeadUnmerged, each
// consent it had granted before its merge of the absorbed lead
// (sRecs[merged], the LeadMerged) that the withdrawal the merge carried
// in replaced, unless the channel changed since or a lead merged into it
// since, and still, has it withdrawn (a merge carries no withdrawal the
// survivor shows already): the unmerge says they are two people, and the
// withdrawal was the other's. A channel the survivor had no word on
// stays withdrawn (docs/events.md).
func (a *App) regranted(ctx context.Context, in MergeLeads, state lifecycle.State, sRecs []eventstore.Record, merged int, meta envelope.Meta) ([]*eventv1.Event, error) {
	survivor := in.Survivor
	before, _ := fold(survivor, sRecs[:merged])
	granted := map[eventv1.ConsentChannel]bool{}
	for _, c := range before.Consents {
		granted[c.GetChannel()] = c.GetStatus() == eventv1.ConsentStatus_CONSENT_STATUS_GRANTED
	}
	var carried []eventv1.ConsentChannel
	i := merged + 1
	for ; i < len(sRecs); i++ {
		c := sRecs[i].Event.GetConsentChanged()
		if c == nil || c.GetSource() != consentFromMerge {
			break
		}
		carried = append(carried, c.GetConsent().GetChannel())
	}
	for _, r := range sRecs[i:] {
		if c := r.Event.GetConsentChanged(); c != nil {
			carried = slices.DeleteFunc(carried, func(ch eventv1.ConsentChannel) bool { return ch == c.GetConsent().GetChannel() })
		}
	}
	carried = slices.DeleteFunc(carried, func(ch eventv1.ConsentChannel) bool { return !granted[ch] })
	if len(carried) == 0 {
		return nil, nil
	}
	// A lead merged later carried nothing the survivor showed withdrawn
	// already; one merged earlier was heard before this merge's withdrawal
	// and, if it withdrew, granted again since on the survivor.
	now, _ := fold(survivor, sRecs)
	for _, r := range sRecs[merged+1:] {
		other := r.Event.GetLeadMerged().GetAbsorbedLeadId()
		if other == "" || other == in.Absorbed || !slices.Contains(now.Absorbed, other) {
			continue
		}
		recs, err := a.leads.Load(ctx, other)
		if err != nil {
			return nil, err
		}
		view, _ := fold(other, recs)
		for _, c := range view.Consents {
			if c.GetStatus() == eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN {
				carried = slices.DeleteFunc(carried, func(ch eventv1.ConsentChannel) bool { return ch == c.GetChannel() })
			}
		}
	}
	var out []*eventv1.Event
	for _, ch := range carried {
		ev, _, err := a.leadEvent(survivor, state, lifecycle.Command{Name: lifecycle.ChangeConsent},
			&eventv1.ConsentChanged{Consent: &eventv1.Consent{Channel: ch, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}, Source: consentFromMerge}, meta, a.now())
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// reclaimed withdraws again, on the survivor after its LeadUnmerged u,
// each channel whose last change is a grant that came through a lead
// gone back (sent to it: merged_from; or carried in by its merge), by u
// or an unmerge before, unless the last word on it still standing (the
// survivor's own, its capture form's included, or that of a lead still
// merged into it) was a grant: the grant was the other person's, and
// went back with the lead (giveBack). A channel with no word standing is
// withdrawn, as a merge leaves one (regranted).
func (a *App) reclaimed(survivor string, state lifecycle.State, recs []eventstore.Record, u *eventv1.LeadUnmerged, meta envelope.Meta) ([]*eventv1.Event, error) {
	type word struct {
		status eventv1.ConsentStatus
		from   string // the lead whose person's word it is; "": the survivor's
		gone   bool   // that lead went back since
	}
	var (
		words     = map[eventv1.ConsentChannel][]word{}
		order     []eventv1.ConsentChannel
		carriedBy string // the lead whose merge carried in the merge-source changes here
	)
	add := func(c *eventv1.Consent, from string) {
		ch := c.GetChannel()
		if _, ok := words[ch]; !ok {
			order = append(order, ch)
		}
		words[ch] = append(words[ch], word{status: c.GetStatus(), from: from})
	}
	goneBack := func(u *eventv1.LeadUnmerged) {
		for _, ws := range words {
			for i := range ws {
				ws[i].gone = ws[i].gone || envelope.GivenBack(u, ws[i].from)
			}
		}
	}
	for _, r := range recs {
		ev := r.Event
		c := ev.GetConsentChanged()
		switch {
		case ev.GetLeadMerged() != nil:
			carriedBy = ev.GetLeadMerged().GetAbsorbedLeadId()
		case c == nil || c.GetSource() != consentFromMerge:
			carriedBy = ""
		}
		switch {
		case ev.GetLeadCaptured() != nil:
			for _, c := range ev.GetLeadCaptured().GetConsents() {
				add(c, "")
			}
		case ev.GetLeadUnmerged().GetSurvivorLeadId() == survivor:
			// Its own unmerge from a survivor above gave nothing back.
			goneBack(ev.GetLeadUnmerged())
		case c != nil && c.GetSource() == consentFromMerge && carriedBy != "":
			add(c.GetConsent(), carriedBy)
		case c != nil:
			add(c.GetConsent(), c.GetMergedFrom())
		}
	}
	goneBack(u)
	var out []*eventv1.Event
	for _, ch := range order {
		ws := words[ch]
		if w := ws[len(ws)-1]; !w.gone || w.status != eventv1.ConsentStatus_CONSENT_STATUS_GRANTED {
			continue
		}
		standing := eventv1.ConsentStatus_CONSENT_STATUS_UNSPECIFIED
		for _, w := range slices.Backward(ws) {
			if !w.gone {
				standing = w.status
				break
			}
		}
		if standing == eventv1.ConsentStatus_CONSENT_STATUS_GRANTED {
			continue
		}
		ev, _, err := a.leadEvent(survivor, state, lifecycle.Command{Name: lifecycle.ChangeConsent},
			&eventv1.ConsentChanged{Consent: &eventv1.Consent{Channel: ch, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN}, Source: consentFromMerge}, meta, a.now())
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// consentFromMerge is the source of a withdrawal a merge or an unmerge
// carried over from the other lead.
const consentFromMerge = "merge"

// heardWithdrawn is every channel withdrawn on leadID in recs, its events
// since a lead was merged into it, granted again since or not: the
// withdrawal may have been the absorbed person's, the grant the
// survivor's. Only those heard (see heard): one sent to a lead going
// back (ours) is replayed on it in order instead (giveBack).
func heardWithdrawn(leadID string, recs []eventstore.Record, ours func(via string) bool) []*eventv1.Consent {
	var (
		out  []*eventv1.Consent
		seen = map[eventv1.ConsentChannel]bool{}
	)
	for i, h := range heard(leadID, recs, ours) {
		c := recs[i].Event.GetConsentChanged()
		if !h || seen[c.GetConsent().GetChannel()] {
			continue
		}
		seen[c.GetConsent().GetChannel()] = true
		out = append(out, c.GetConsent())
	}
	return out
}

// heard marks each withdrawal in recs, leadID's events, that leadID's
// own chain heard while merged, the absorbed lead's person's among it:
// not one another merge carried in with its lead (a third person's,
// right after that LeadMerged), but one an unmerge gave back to leadID
// (right after its LeadUnmerged); and not one sent to a lead going back
// (ours, by its merged_from), which is that lead's for sure.
func heard(leadID string, recs []eventstore.Record, ours func(via string) bool) []bool {
	out := make([]bool, len(recs))
	carried := false // the merge-source changes here came with a merged lead
	for i, r := range recs {
		ev := r.Event
		c := ev.GetConsentChanged()
		switch {
		case ev.GetLeadMerged() != nil:
			carried = ev.GetLeadMerged().GetAbsorbedLeadId() != leadID
		case c == nil || c.GetSource() != consentFromMerge:
			carried = false
		}
		out[i] = c != nil && !(c.GetSource() == consentFromMerge && carried) && !ours(c.GetMergedFrom()) &&
			c.GetConsent().GetStatus() == eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN
	}
	return out
}

// maxMergeDepth is the longest chain of merges a lead may end: a capture
// of the deepest lead's identity follows the chain in maxHops reads.
const maxMergeDepth = maxHops - 1

// mergeDepth is how deep the leads merged into a lead go, given the
// leads merged into it directly (absorbed): 0 for none, counted up to
// limit+1 at most. The lead itself is not read again.
func (a *App) mergeDepth(ctx context.Context, absorbed []string, limit int) (int, error) {
	if limit < 0 {
		return 0, nil
	}
	depth := 0
	for _, id := range absorbed {
		d := 0
		if limit > 0 {
			recs, err := a.leads.Load(ctx, id)
			if err != nil {
				return 0, err
			}
			view, _ := fold(id, recs)
			if d, err = a.mergeDepth(ctx, view.Absorbed, limit-1); err != nil {
				return 0, err
			}
		}
		depth = max(depth, d+1)
	}
	return depth, nil
}

// UnmergeLeads undoes a merge: both leads record LeadUnmerged in one
// atomic commit, the absorbed lead back in the state it had before the
// merge (lifecycle's Unmerge, with the state read from the event before
// its LeadMerged), the survivor as it is, with whatever it recorded
// meanwhile, except that a consent it saw withdrawn while merged is
// withdrawn on the absorbed lead too, and a grant of its own the merge's
// carried withdrawal replaced is given back (regranted). Captures of the absorbed lead's
// identities find it again, as its claims never moved. What it gives back
// past one commit follows in commits of the absorbed lead's own
// (pairCommit). Unmerging again writes only what a crash kept an unmerge
// from giving back: nothing, mostly.
//
// Errors: *ValidationError, ErrNotFound, lifecycle.ErrRefused (the
// absorbed lead is not merged into the survivor; the survivor is merged
// or erased, or still being given back what came through it by an
// unmerge of its own), eventstore.ErrConflict after repeated races.
func (a *App) UnmergeLeads(ctx context.Context, in MergeLeads, meta envelope.Meta) (Merged, error) {
	if err := checkPair(in); err != nil {
		return Merged{}, err
	}
	// What the survivor's own unmerge still owes it may have come through
	// the absorbed lead: written after this unmerge, it would stay.
	if err := a.FinishUnmerge(ctx, in.Survivor); err != nil {
		return Merged{}, err
	}
	meta.Actor = meta.ActorOr(in.Actor)
	payload := &eventv1.LeadUnmerged{SurvivorLeadId: in.Survivor, AbsorbedLeadId: in.Absorbed, Reason: in.Reason}
	// Before a commit that leaves replays for commits of their own, and
	// again after it (the first may fire before it is stored): a crash
	// between them leaves the rest to FinishUnmerge, not to a repeat
	// nobody may send.
	split := func(ctx context.Context) error {
		if a.later == nil {
			return nil
		}
		return a.later.FinishUnmerge(ctx, in.Absorbed, a.now().Add(a.finishAfter))
	}
	return a.pairCommitSplit(ctx, in, func(sRecs, aRecs []eventstore.Record) (sEvs, aEvs []*eventv1.Event, err error) {
		sState, _ := stateOf(sRecs)
		aState, _ := stateOf(aRecs)
		aHead := aRecs[len(aRecs)-1]
		if at := lastAbsorbedAt(aRecs, in.Absorbed); at >= 0 && aState.Status != lifecycle.StatusMerged &&
			aRecs[at].Event.GetLeadUnmerged().GetSurvivorLeadId() == in.Survivor {
			// Unmerged already (withdrawals it carried back, and leads it
			// absorbed since, may follow): what a crash kept it from
			// giving back, if anything.
			if unfinishedUnmerge(aRecs, in.Absorbed) == "" {
				return nil, nil, nil
			}
			rest, err := a.restGivenBack(ctx, in, sRecs, aRecs)
			return nil, rest, err
		}
		if err := a.refuseOwed(ctx, lifecycle.Unmerge, in.Survivor, sState, sRecs); err != nil {
			return nil, nil, err
		}
		merged := aHead.Event.GetLeadMerged()
		if at := lastAbsorbedAt(aRecs, in.Absorbed); aState.Status == lifecycle.StatusErased && at >= 0 &&
			aRecs[at].Event.GetLeadMerged().GetSurvivorLeadId() == in.Survivor {
			return nil, nil, &lifecycle.RefusedError{Command: "Unmerge", Status: aState.Status,
				Reason: "lead " + in.Absorbed + " was erased while merged into " + in.Survivor + ": an erased lead is not unmerged"}
		}
		if aState.Status != lifecycle.StatusMerged || merged.GetSurvivorLeadId() != in.Survivor {
			return nil, nil, &lifecycle.RefusedError{Command: "Unmerge", Status: aState.Status, Reason: "lead " + in.Absorbed + " is not merged into " + in.Survivor}
		}
		// What came through the leads merged into it goes back with it too.
		own, _ := fold(in.Absorbed, aRecs)
		deeper, err := a.absorbedBy(ctx, in.Absorbed, own.Absorbed)
		if err != nil {
			return nil, nil, fmt.Errorf("leads merged into %s: %w", in.Absorbed, err)
		}
		payload := proto.CloneOf(payload)
		payload.GivenBackVia = deeper
		survivor, err := a.factEvent(in.Survivor, sState, payload, meta)
		if err != nil {
			return nil, nil, survivorErr(lifecycle.Unmerge, in.Survivor, err)
		}
		if len(aRecs) < 2 {
			return nil, nil, fmt.Errorf("state of %s before its merge: no event before its LeadMerged", in.Absorbed)
		}
		// The state before the merge, as the absorbed lead's own event
		// before its LeadMerged recorded it.
		prior := lifecycle.FromProto(aRecs[len(aRecs)-2].Event.GetLifecycle())
		absorbed, _, err := a.leadEvent(in.Absorbed, aState, lifecycle.Command{
			Name: lifecycle.Unmerge, Reason: in.Reason, Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline,
		}, payload, meta, a.now())
		if err != nil {
			return nil, nil, fmt.Errorf("absorbed lead %s: %w", in.Absorbed, err)
		}
		// A withdrawal the survivor heard while merged may have come from
		// the absorbed lead's person: it goes back with the lead.
		since := 0
		for i, r := range sRecs {
			if m := r.Event.GetLeadMerged(); m.GetAbsorbedLeadId() == in.Absorbed {
				since = i
			}
		}
		// Leads merged into it unmerge from it next: every withdrawal goes
		// on its stream, one it had already too, for them to find.
		had := own.Consents
		if len(own.Absorbed) > 0 {
			had = nil
		}
		ours := func(via string) bool { return envelope.GivenBack(payload, via) }
		back, err := a.withdrawals(in.Absorbed, lifecycle.FromProto(absorbed.GetLifecycle()), heardWithdrawn(in.Survivor, sRecs[since:], ours), had, meta)
		if err != nil {
			return nil, nil, fmt.Errorf("absorbed lead %s: %w", in.Absorbed, err)
		}
		// What its person sent while merged went on to the survivor: it
		// goes back, replayed on the absorbed lead, and leaves the
		// survivor's view (fold) and its campaign touches.
		given, ids, err := a.giveBack(ctx, in.Absorbed, in.Survivor, deeper, absorbed.GetEventId(), lifecycle.FromProto(absorbed.GetLifecycle()), sRecs[since:], meta, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("absorbed lead %s: %w", in.Absorbed, err)
		}
		// Both LeadUnmerged events hold payload: they name what went back.
		payload.GivenBackEventIds, payload.GivenBackCount = ids, uint32(len(given))
		restored, err := a.regranted(ctx, in, sState, sRecs, since, meta)
		if err != nil {
			return nil, nil, survivorErr(lifecycle.Unmerge, in.Survivor, err)
		}
		reclaimed, err := a.reclaimed(in.Survivor, sState, sRecs, payload, meta)
		if err != nil {
			return nil, nil, survivorErr(lifecycle.Unmerge, in.Survivor, err)
		}
		sEvs = append(append([]*eventv1.Event{survivor}, restored...), reclaimed...)
		return sEvs, append(append([]*eventv1.Event{absorbed}, back...), given...), nil
	}, split)
}

// FinishUnmerge writes what the last unmerge of leadID (the absorbed lead)
// has not given back yet, cut off between its commits; an unmerge done,
// or none, writes nothing.
func (a *App) FinishUnmerge(ctx context.Context, leadID string) error {
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return err
	}
	survivor := unfinishedUnmerge(recs, leadID)
	if survivor == "" {
		return nil
	}
	in := MergeLeads{Survivor: survivor, Absorbed: leadID}
	_, err = a.pairCommit(ctx, in, func(sRecs, aRecs []eventstore.Record) ([]*eventv1.Event, []*eventv1.Event, error) {
		if st, _ := stateOf(aRecs); st.Status == lifecycle.StatusMerged || unfinishedUnmerge(aRecs, leadID) != survivor {
			return nil, nil, nil
		}
		rest, err := a.restGivenBack(ctx, in, sRecs, aRecs)
		return nil, rest, err
	})
	return err
}

// stillOwed is the survivor of the last unmerge of leadID (recs, its
// events) if that unmerge has yet to write some of what it gives back; ""
// when it wrote all it could (a replay skipped since, its key shredded,
// is not owed).
func (a *App) stillOwed(ctx context.Context, leadID string, recs []eventstore.Record) (string, error) {
	survivor := unfinishedUnmerge(recs, leadID)
	if survivor == "" {
		return "", nil
	}
	sRecs, err := a.leads.Load(ctx, survivor)
	if err != nil {
		return "", err
	}
	rest, err := a.restGivenBack(ctx, MergeLeads{Survivor: survivor, Absorbed: leadID}, sRecs, recs)
	if err != nil || len(rest) == 0 {
		return "", err
	}
	return survivor, nil
}

// owedFirst writes what an unmerge cut off still owes leadID (recs, its
// events) and returns eventstore.ErrConflict, so the command is planned
// again after it; nil when nothing is owed. A consent change that finds
// the channel saying so already writes nothing, and an older change the
// rest gives back would then stand over it.
func (a *App) owedFirst(ctx context.Context, leadID string, recs []eventstore.Record) error {
	owed, err := a.stillOwed(ctx, leadID, recs)
	if err != nil || owed == "" {
		return err
	}
	if err := a.FinishUnmerge(ctx, leadID); err != nil {
		return err
	}
	return eventstore.ErrConflict
}

// refuseOwed refuses cmd on leadID while its unmerge still owes it
// replays (stillOwed): FinishUnmerge, its timer's or the command's own,
// writes them first.
func (a *App) refuseOwed(ctx context.Context, cmd lifecycle.CommandName, leadID string, state lifecycle.State, recs []eventstore.Record) error {
	from, err := a.stillOwed(ctx, leadID, recs)
	if err != nil || from == "" {
		return err
	}
	return &lifecycle.RefusedError{Command: cmd, Status: state.Status,
		Reason: "lead " + leadID + " is still being given back what came through it while merged into " + from + ": try again in a minute"}
}

// restGivenBack is what an unmerge gave back that is not on the absorbed
// lead yet: a crash between its commits cut it off. The replays are made
// again, with the same ids, from the survivor's events between its merge
// of the lead and its LeadUnmerged, and those stored are left out. An
// unmerge from before given_back_count wrote all in one commit, and an
// erased lead takes none.
func (a *App) restGivenBack(ctx context.Context, in MergeLeads, sRecs, aRecs []eventstore.Record) ([]*eventv1.Event, error) {
	at := lastAbsorbedAt(aRecs, in.Absorbed)
	unmerged := aRecs[at].Event
	state, _ := stateOf(aRecs)
	if unmerged.GetLeadUnmerged().GetGivenBackCount() == 0 || state.Status == lifecycle.StatusErased {
		return nil, nil
	}
	have := map[string]bool{}
	for _, r := range aRecs[at+1:] {
		have[r.Event.GetEventId()] = true
	}
	// The survivor's side, committed with it, is its last LeadUnmerged of
	// the lead; what went back came in since the merge before it.
	end, since := -1, 0
	for i, r := range sRecs {
		if r.Event.GetLeadUnmerged().GetAbsorbedLeadId() == in.Absorbed {
			end = i
		}
	}
	for i, r := range sRecs[:max(end, 0)] {
		if r.Event.GetLeadMerged().GetAbsorbedLeadId() == in.Absorbed {
			since = i
		}
	}
	if end < 0 {
		return nil, fmt.Errorf("survivor %s has no LeadUnmerged of %s", in.Survivor, in.Absorbed)
	}
	// As the unmerge wrote its first part.
	meta := envelope.Meta{Actor: unmerged.GetActor(), Caller: cmp.Or(unmerged.GetCaller(), unmerged.GetActor()),
		CorrelationID: unmerged.GetCorrelationId(), CausationID: unmerged.GetCausationId(), IdempotencyKey: unmerged.GetIdempotencyKey(), Trace: unmerged.GetTrace()}
	given, _, err := a.giveBack(ctx, in.Absorbed, in.Survivor, unmerged.GetLeadUnmerged().GetGivenBackVia(), unmerged.GetEventId(), state, sRecs[since:end], meta, have)
	if err != nil {
		return nil, fmt.Errorf("absorbed lead %s: %w", in.Absorbed, err)
	}
	// The person's own word on a channel since the cut (sent to the lead,
	// not the unmerge's) is newer than any change it gives back: written
	// after it, an older grant would stand over a withdrawal.
	newer := map[eventv1.ConsentChannel]bool{}
	for _, r := range aRecs[at+1:] {
		if c := r.Event.GetConsentChanged(); c != nil && c.GetGivenBackBy() == "" && c.GetSource() != consentFromMerge {
			newer[c.GetConsent().GetChannel()] = true
		}
	}
	return slices.DeleteFunc(given, func(ev *eventv1.Event) bool {
		c := ev.GetConsentChanged()
		return c != nil && newer[c.GetConsent().GetChannel()]
	}), nil
}

// absorbedBy is every lead merged into leadID now, at any depth, given
// those merged into it directly.
func (a *App) absorbedBy(ctx context.Context, leadID string, direct []string) ([]string, error) {
	out := slices.Clone(direct)
	for i := 0; i < len(out); i++ {
		if len(out) > maxAbsorbed {
			return nil, fmt.Errorf("more than %d leads merged into %s", maxAbsorbed, leadID)
		}
		recs, err := a.leads.Load(ctx, out[i])
		if err != nil {
			return nil, err
		}
		v, _ := fold(out[i], recs)
		out = append(out, v.Absorbed...)
	}
	return out, nil
}

// maxAbsorbed bounds the leads an unmerge reads to find what goes back.
const maxAbsorbed = 1000

// giveBack replays on leadID what recs, its survivor's events since the
// merge, received through it or through a lead merged into it (deeper): each
// submission and activity as stored (sealed with the key of the lead it
// came through already, merged_from naming that lead when it is a deeper
// one), at the time it happened, marked given back; ids are the events
// it replays whose campaign touches reports move from the survivor to
// this lead (each replay names its event too). One sealed with the survivor's key (written before
// 2026-12-05) is not this lead's to open and stays on the survivor's
// stream only (README, known weaknesses).
func (a *App) giveBack(ctx context.Context, leadID, survivor string, deeper []string, unmergedID string, state lifecycle.State, recs []eventstore.Record, meta envelope.Meta, have map[string]bool) (out []*eventv1.Event, ids []string, err error) {
	// via is the merged_from a given-back event keeps, ok whether it goes.
	via := func(from string) (string, bool) {
		switch {
		case from == leadID:
			return "", true
		case from != "" && slices.Contains(deeper, from):
			return from, true
		}
		return "", false
	}
	// A grant sent to this lead is not replayed past a withdrawal heard
	// after it: that goes first (heardWithdrawn), and would be undone.
	withdrawn := heard(survivor, recs, func(from string) bool { _, ok := via(from); return ok })
	replayable := func(i int, c *eventv1.ConsentChanged) bool {
		if c.GetConsent().GetStatus() != eventv1.ConsentStatus_CONSENT_STATUS_GRANTED {
			return true
		}
		for j := i + 1; j < len(recs); j++ {
			if withdrawn[j] && recs[j].Event.GetConsentChanged().GetConsent().GetChannel() == c.GetConsent().GetChannel() {
				return false
			}
		}
		return true
	}
	for i, r := range recs {
		var cmd lifecycle.CommandName
		var from string
		var sealed []byte
		// A replay an older unmerge wrote (naming no event) left its
		// campaign touch with that unmerge's survivor: it does not move.
		moves := true
		switch p := envelope.Payload(r.Event).(type) {
		case *eventv1.LeadResubmitted:
			cmd, from, sealed = lifecycle.Resubmit, p.GetMergedFrom(), p.GetSealedPersonal()
			moves = p.GetGivenBackBy() == "" || p.GetGivenBackEventId() != ""
		case *eventv1.ActivityRecorded:
			cmd, from, sealed = lifecycle.RecordActivity, p.GetMergedFrom(), p.GetSealedDetail()
			moves = p.GetGivenBackBy() == "" || p.GetGivenBackEventId() != ""
		case *eventv1.ConsentChanged:
			if !replayable(i, p) {
				continue
			}
			cmd, from, moves = lifecycle.ChangeConsent, p.GetMergedFrom(), false // no campaign touch
		default:
			continue
		}
		moved := ""
		if moves {
			moved = r.Event.GetEventId()
		}
		keep, ok := via(from)
		id := givenBackID(unmergedID, r.Event.GetEventId())
		if !ok || have[id] {
			continue
		}
		payload := proto.Clone(envelope.Payload(r.Event))
		switch c := payload.(type) {
		case *eventv1.LeadResubmitted:
			c.MergedFrom, c.GivenBackBy, c.GivenBackEventId = keep, survivor, moved
		case *eventv1.ActivityRecorded:
			c.MergedFrom, c.GivenBackBy, c.GivenBackEventId = keep, survivor, moved
		case *eventv1.ConsentChanged:
			c.MergedFrom, c.GivenBackBy = keep, survivor
		}
		if len(sealed) > 0 {
			if _, err := a.keys.Open(ctx, cmp.Or(keep, leadID), sealed); errors.Is(err, vault.ErrCorrupt) || errors.Is(err, vault.ErrNoKey) || errors.Is(err, vault.ErrShredded) {
				// The survivor's key (a block's, or an older lead key): not
				// this lead's to open; or its lead erased since: gone.
				continue
			} else if err != nil {
				return nil, nil, fmt.Errorf("given back from %d: %w", r.Seq, err)
			}
		}
		m := meta
		m.OccurredAt = r.Event.GetOccurredAt().AsTime()
		ev, next, err := a.leadEvent(leadID, state, lifecycle.Command{Name: cmd}, payload, m, a.now())
		if err != nil {
			return nil, nil, err
		}
		ev.EventId = id
		out, state = append(out, ev), next
		if moved != "" {
			ids = append(ids, moved)
		}
	}
	return out, ids, nil
}

// givenBackID is the event id of an unmerge's replay of event eventID:
// the same whoever writes it (a repeat of the unmerge writing what a
// crash cut off), one per unmerge.
func givenBackID(unmergedID, eventID string) string {
	return uuid.NewSHA1(givenBackSpace, []byte(unmergedID+"\x00"+eventID)).String()
}

var givenBackSpace = uuid.MustParse("6f1d3c52-4a8e-5b7f-9c21-0d3e8a6b4f19")

// lastAbsorbedAt is the index of the last LeadMerged or LeadUnmerged that
// names leadID the absorbed lead, -1 if none.
func lastAbsorbedAt(recs []eventstore.Record, leadID string) int {
	for i := len(recs) - 1; i >= 0; i-- {
		ev := recs[i].Event
		if ev.GetLeadMerged().GetAbsorbedLeadId() == leadID || ev.GetLeadUnmerged().GetAbsorbedLeadId() == leadID {
			return i
		}
	}
	return -1
}

// unfinishedUnmerge is the survivor of a lead's last unmerge if that
// unmerge has not given back all it said (given_back_count) yet: cut off
// between its commits, it waits for FinishUnmerge or a repeat.
func unfinishedUnmerge(recs []eventstore.Record, leadID string) string {
	at := lastAbsorbedAt(recs, leadID)
	if at < 0 {
		return ""
	}
	u := recs[at].Event.GetLeadUnmerged()
	if u.GetGivenBackCount() == 0 {
		return ""
	}
	n := uint32(0)
	for _, r := range recs[at+1:] {
		if givenBackBy(r.Event) == u.GetSurvivorLeadId() {
			n++
		}
	}
	if n >= u.GetGivenBackCount() {
		return ""
	}
	return u.GetSurvivorLeadId()
}

// mayBeOwed reports whether ev, leadID's last event, may end an unmerge
// cut off between its commits: the lead's own LeadUnmerged that gives
// events back, or a replay. FinishUnmerge tells.
func mayBeOwed(ev *eventv1.Event, leadID string) bool {
	u := ev.GetLeadUnmerged()
	return u.GetAbsorbedLeadId() == leadID && u.GetGivenBackCount() > 0 || givenBackBy(ev) != ""
}

// givenBackBy is the survivor that gave an event back, "" for any other.
func givenBackBy(ev *eventv1.Event) string {
	return cmp.Or(ev.GetActivityRecorded().GetGivenBackBy(), ev.GetLeadResubmitted().GetGivenBackBy(), ev.GetConsentChanged().GetGivenBackBy())
}

func checkPair(in MergeLeads) error {
	var v form.Violations
	form.LeadID(&v, "survivor_lead_id", in.Survivor)
	form.LeadID(&v, "absorbed_lead_id", in.Absorbed)
	if in.Survivor != "" && in.Survivor == in.Absorbed {
		v.Add("absorbed_lead_id", "must differ from survivor_lead_id")
	}
	form.Reason(&v, "reason", in.Reason, MaxReason)
	form.Actor(&v, "actor", in.Actor)
	return invalid(v)
}

// pairCommit reads both leads, lets decide make the events for each (none:
// already done), and appends them in one atomic commit, deciding again
// after a lost race. Absorbed events past one commit's limit (an unmerge
// of a lead merged long enough to collect a thousand) follow on that
// lead alone, in commits of their own: decide, run again after a race or
// by a repeat of the command, makes those not stored yet, with no events
// for the survivor.
func (a *App) pairCommit(ctx context.Context, in MergeLeads, decide func(survivor, absorbed []eventstore.Record) ([]*eventv1.Event, []*eventv1.Event, error)) (Merged, error) {
	return a.pairCommitSplit(ctx, in, decide, nil)
}

// pairCommitSplit is pairCommit; split, if set, runs before a first commit
// that leaves absorbed events for commits of their own, and may refuse it.
func (a *App) pairCommitSplit(ctx context.Context, in MergeLeads, decide func(survivor, absorbed []eventstore.Record) ([]*eventv1.Event, []*eventv1.Event, error), split func(context.Context) error) (Merged, error) {
	wrote := false
	for attempt := range maxRaces {
		sRecs, err := a.leads.Load(ctx, in.Survivor)
		if err != nil {
			return Merged{}, err
		}
		aRecs, err := a.leads.Load(ctx, in.Absorbed)
		if err != nil {
			return Merged{}, err
		}
		for id, recs := range map[string][]eventstore.Record{in.Survivor: sRecs, in.Absorbed: aRecs} {
			if len(recs) == 0 {
				return Merged{}, fmt.Errorf("lead %s: %w", id, ErrNotFound)
			}
		}
		_, sSeq := stateOf(sRecs)
		_, aSeq := stateOf(aRecs)
		sEvs, aEvs, err := decide(sRecs, aRecs)
		if err != nil {
			return Merged{}, err
		}
		done := Merged{Survivor: sSeq, Absorbed: aSeq, Replayed: len(sEvs) == 0}
		if len(sEvs) > 0 {
			n := min(len(aEvs), eventstore.MaxBatch-len(sEvs))
			if n < len(aEvs) && split != nil {
				if err := split(ctx); err != nil {
					return Merged{}, err
				}
			}
			vs, err := a.leads.Commit(ctx,
				LeadAppend{LeadID: in.Survivor, Expected: sSeq, Events: sEvs},
				LeadAppend{LeadID: in.Absorbed, Expected: aSeq, Events: aEvs[:n]})
			if errors.Is(err, eventstore.ErrConflict) {
				if err := eventstore.AfterConflict(ctx, attempt); err != nil {
					return Merged{}, err
				}
				continue
			}
			if err != nil {
				return Merged{}, err
			}
			done.Survivor, done.Absorbed, aEvs, wrote = vs[0], vs[1], aEvs[n:], true
			if len(aEvs) > 0 && split != nil {
				if err := split(ctx); err != nil {
					a.log.WarnContext(ctx, "schedule the finish of a split commit again", "lead", in.Absorbed, "err", err)
				}
			}
			if len(aEvs) > 0 {
				a.passed(AfterFirstPart, in.Absorbed)
			}
		}
		for len(aEvs) > 0 {
			n := min(len(aEvs), eventstore.MaxBatch)
			v, err := a.leads.Append(ctx, in.Absorbed, done.Absorbed, aEvs[:n]...)
			if errors.Is(err, eventstore.ErrConflict) {
				break
			}
			if err != nil {
				return Merged{}, err
			}
			done.Absorbed, aEvs, wrote = v, aEvs[n:], true
		}
		if len(aEvs) == 0 {
			done.Replayed = done.Replayed && !wrote
			return done, nil
		}
		if err := eventstore.AfterConflict(ctx, attempt); err != nil {
			return Merged{}, err
		}
	}
	return Merged{}, fmt.Errorf("merge %s into %s: %w after %d races", in.Absorbed, in.Survivor, eventstore.ErrConflict, maxRaces)
}

// survivorErr names the command the caller sent when the survivor's side
// of it is refused (it is written as a fact, checked as a resubmission).
func survivorErr(cmd lifecycle.CommandName, survivor string, err error) error {
	var refused *lifecycle.RefusedError
	if errors.As(err, &refused) {
		return &lifecycle.RefusedError{Command: cmd, Status: refused.Status, Reason: "the survivor " + survivor + " is " + refused.Status.String()}
	}
	return fmt.Errorf("survivor lead %s: %w", survivor, err)
}

// withSales reports whether a lead in status s is qualified for sales or
// in their hands (an MQL, assigned, accepted, an opportunity, or won).
func withSales(s lifecycle.Status) bool {
	switch s {
	case lifecycle.StatusMQL, lifecycle.StatusAssigned, lifecycle.StatusAccepted, lifecycle.StatusOpportunity, lifecycle.StatusWon:
		return true
	}
	return false
}
