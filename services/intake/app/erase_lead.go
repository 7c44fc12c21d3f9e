package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/form"
)

// EraseLead asks for a lead's personal data to be erased.
type EraseLead struct {
	LeadID string
	Reason string
	Actor  *eventv1.Actor
}

// MaxReason bounds an erasure's, merge's or unmerge's reason.
const MaxReason = 500

// EraseLead erases a lead's personal data. It reads the identities the
// lead holds from its sealed submissions, appends LeadErased naming them
// (the commit point: the lead is ERASED from here on), releases them so
// that a later capture of the person makes a new lead, and shreds the
// lead's key (pkg/vault), after which nothing sealed for it opens again,
// in any process. The history stays: every event replays, its personal
// fields unreadable. Leads merged into this one are the same person and
// are erased with it.
//
// Erasing an erased lead finishes what a cut-short erasure left (releases
// and shredding are idempotent) and answers Replayed.
//
// A lead merged into another is refused (lifecycle.ErrRefused naming the
// survivor): later captures of the person went to the survivor.
//
// Errors: *ValidationError, ErrNotFound, lifecycle.ErrRefused,
// eventstore.ErrConflict after repeated races.
func (a *App) EraseLead(ctx context.Context, in EraseLead, meta envelope.Meta) (Written, error) {
	var v form.Violations
	form.LeadID(&v, "lead_id", in.LeadID)
	// Why is part of the record a regulator asks for.
	form.Reason(&v, "reason", in.Reason, MaxReason)
	form.Actor(&v, "actor", in.Actor)
	if err := invalid(v); err != nil {
		return Written{}, err
	}
	meta.Actor = meta.ActorOr(in.Actor)
	return a.erase(ctx, in.LeadID, "", in.Reason, meta, maxHops)
}

// erase erases one lead, and the leads merged into it to depth. A lead
// erased with its survivor names it (survivor): if it is no longer merged
// into it (an unmerge won the race), it is another person's again, and
// is left alone; the survivor's own append then loses its race and reads
// the unmerge.
func (a *App) erase(ctx context.Context, leadID, survivor, reason string, meta envelope.Meta, depth int) (Written, error) {
	for attempt := range maxRaces {
		recs, err := a.leads.Load(ctx, leadID)
		if err != nil {
			return Written{}, err
		}
		if len(recs) == 0 {
			return Written{}, fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
		}
		state, version := stateOf(recs)
		view, subs := fold(leadID, recs)
		if state.Status == lifecycle.StatusErased {
			return Written{Version: version, Replayed: true}, a.retried(ctx, leadID, a.finishRecorded(ctx, leadID, recs), true)
		}
		// What an unmerge still owes the lead is on its survivor, sealed
		// with this lead's keys: written first, the erasure finds them.
		if owed, err := a.stillOwed(ctx, leadID, recs); err != nil {
			return Written{}, err
		} else if owed != "" {
			if err := a.FinishUnmerge(ctx, leadID); err != nil {
				return Written{}, err
			}
			continue
		}
		switch {
		case survivor != "" && view.MergedInto != survivor:
			return Written{Version: version}, nil
		case survivor == "" && state.Status == lifecycle.StatusMerged:
			// Checked on every try: a merge may land while this runs.
			if err := a.mergedErasable(ctx, leadID, view.MergedInto, state); err != nil {
				return Written{}, err
			}
		}
		if depth > 0 {
			for _, absorbed := range view.Absorbed {
				_, err := a.erase(ctx, absorbed, leadID, reason, meta, depth-1)
				var unfinished *unfinishedErasure
				if errors.As(err, &unfinished) {
					// Erased and its keys shredded (now or before); its timer
					// finishes the releases. This lead must not stay
					// readable meanwhile.
					a.log.WarnContext(ctx, "erasure of a merged lead not finished; its timer retries", "lead", absorbed, "err", err)
					continue
				}
				if err != nil {
					return Written{}, fmt.Errorf("erase %s, merged into %s: %w", absorbed, leadID, err)
				}
			}
		}
		held := make([]heldSubmission, 0, len(subs))
		for _, sub := range subs {
			held = append(held, heldSubmission{leadID, sub})
		}
		if view.MergedInto != "" {
			// What its person sent while merged is on the survivors
			// above it, and its identities were claimed for this lead.
			if err := a.upTheChain(ctx, view.MergedInto, func(lead string, _ []eventstore.Record, subs []submission) error {
				for _, sub := range subs {
					if sub.via == leadID && !sub.gone {
						held = append(held, heldSubmission{lead, sub})
					}
				}
				return nil
			}); err != nil {
				return Written{}, err
			}
		}
		released, err := a.identitiesOf(ctx, held)
		if err != nil {
			return Written{}, err
		}
		ev, _, err := a.leadEvent(leadID, state, lifecycle.Command{Name: lifecycle.Erase, Reason: reason},
			&eventv1.LeadErased{Reason: reason, Released: released}, meta, a.now())
		if err != nil {
			return Written{}, err
		}
		if a.later != nil {
			// Before the commit point: a crash after it leaves the keys
			// to this, not to a repeat nobody may send.
			if err := a.later.FinishErase(ctx, leadID, a.now().Add(a.finishAfter)); err != nil {
				return Written{}, err
			}
		}
		nv, err := a.leads.Append(ctx, leadID, version, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Written{}, err
			}
			continue
		}
		if err != nil {
			return Written{}, err
		}
		if a.later != nil {
			// Again, now that it is stored: the first may have fired
			// before the commit (a slow commit, a clock behind the
			// server's) and found nothing to finish.
			if err := a.later.FinishErase(ctx, leadID, a.now().Add(a.finishAfter)); err != nil {
				a.log.WarnContext(ctx, "schedule the erasure's finish again", "lead", leadID, "err", err)
			}
		}
		a.passed(AfterErased, leadID)
		// recs is the whole history before LeadErased: the append
		// checked it, so every key it names is here.
		// Its timer was scheduled with the commit.
		return Written{Version: nv}, a.retried(ctx, leadID, a.finishErase(ctx, leadID, released, sealedKeyIDs(recs), ev.GetEventId()), false)
	}
	return Written{}, fmt.Errorf("lead %s: %w after %d races", leadID, eventstore.ErrConflict, maxRaces)
}

// unfinishedErasure is an erasure committed and its keys shredded whose
// identity releases failed: its timer finishes them. A failed shred is
// not one: it leaves data readable, and the caller must hear of it.
type unfinishedErasure struct{ err error }

func (e *unfinishedErasure) Error() string { return "erasure stored, not finished: " + e.err.Error() }
func (e *unfinishedErasure) Unwrap() error { return e.err }

// retried keeps err an unfinishedErasure only while a timer will finish
// leadID's erasure: scheduled with its commit, or (again) here for one
// erased before, whose timer may be spent (dead-lettered while the
// releases kept failing). Without timers, or when scheduling fails, it
// is a plain error: the caller must hear of it.
func (a *App) retried(ctx context.Context, leadID string, err error, again bool) error {
	var unfinished *unfinishedErasure
	if !errors.As(err, &unfinished) {
		return err
	}
	if a.later == nil {
		return unfinished.err
	}
	if !again {
		return err
	}
	if serr := a.later.FinishErase(ctx, leadID, a.now().Add(a.finishAfter)); serr != nil {
		return errors.Join(unfinished.err, serr)
	}
	return err
}

// mergedErasable refuses the erasure of a lead merged into survivor:
// what was captured of the person since the merge is sealed on the
// survivor, so erasing this lead alone would keep it. Unless the survivor
// is erased already and its erasure missed this lead (a chain deeper than
// it follows). The refusal names the top of the chain, which is what to
// erase.
func (a *App) mergedErasable(ctx context.Context, leadID, survivor string, state lifecycle.State) error {
	top := survivor
	for range maxHops {
		head, err := a.leads.Head(ctx, top)
		if err != nil {
			return err
		}
		st, _ := headState(head)
		if top == survivor && head != nil && st.Status == lifecycle.StatusErased {
			return nil
		}
		if head == nil || st.Status != lifecycle.StatusMerged {
			break
		}
		top = head.Event.GetLeadMerged().GetSurvivorLeadId()
	}
	return &lifecycle.RefusedError{Command: lifecycle.Erase, Status: state.Status,
		Reason: fmt.Sprintf("lead is merged into %s, which holds what was captured of this person since: erase %s (the leads merged into it go with it), or unmerge first", survivor, top)}
}

// FinishAfter is how long after an erasure's commit its releases and
// shredding are done again, and after an unmerge's first commit the rest
// of what it gives back, in case it was cut short: long past the time
// they take.
const FinishAfter = time.Minute

// FinishErase finishes the erasure of a lead that was cut short after its
// LeadErased (the releases and shredding are idempotent, so one that
// finished costs only reads). A lead that is not erased, an erasure that
// lost its race or never got there, is left alone.
func (a *App) FinishErase(ctx context.Context, leadID string) error {
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return err
	}
	if st, _ := stateOf(recs); st.Status != lifecycle.StatusErased {
		return nil
	}
	return a.finishRecorded(ctx, leadID, recs)
}

// finishRecorded finishes an erasure recorded in recs.
func (a *App) finishRecorded(ctx context.Context, leadID string, recs []eventstore.Record) error {
	var (
		released []*eventv1.Identity
		eventID  string
	)
	for _, r := range recs {
		if e := r.Event.GetLeadErased(); e != nil {
			released, eventID = e.GetReleased(), r.Event.GetEventId()
		}
	}
	// Named as the erasure's first try named them, so a release it
	// stored whose answer was lost is found, not written twice.
	return a.finishErase(ctx, leadID, released, sealedKeyIDs(recs), eventID)
}

// heldSubmission is a submission and the lead whose events hold it.
type heldSubmission struct {
	lead string
	sub  submission
}

// identitiesOf is every identity a lead's submissions name: each email
// and external id, as claim keys. A lead created from an email holds it
// under its own id, which is that email's token.
func (a *App) identitiesOf(ctx context.Context, subs []heldSubmission) ([]*eventv1.Identity, error) {
	seen := map[ClaimKey]bool{}
	var out []*eventv1.Identity
	add := func(k ClaimKey) {
		if !seen[k] {
			seen[k] = true
			out = append(out, &eventv1.Identity{Kind: k.Kind, Token: k.Token})
		}
	}
	for _, h := range subs {
		leadID, sub := h.lead, h.sub
		if sub.gone {
			continue // went back with an unmerge: the identities are that lead's
		}
		p, err := a.openPersonal(ctx, leadID, sub)
		if sub.via != "" && errors.Is(err, vault.ErrShredded) {
			// Sealed for the lead it came through, erased already (first,
			// as merged into this one): its erasure had it.
			continue
		}
		if errors.Is(err, vault.ErrNoKey) {
			// Lost with its key (a capture cut short): it opens for
			// nobody, and an erasure must not wait on it.
			a.log.WarnContext(ctx, "submission without its key", "lead", leadID, "seq", sub.rec.Seq)
			continue
		}
		if err != nil {
			return nil, err
		}
		l := form.Lead{Capture: form.Capture{ExternalID: p.GetExternalId()}, Email: p.GetContact().GetEmail()}
		if l.ExternalID.GetId() == "" {
			l.ExternalID = nil
		}
		for _, k := range a.identity(l).all() {
			if k.Token != "" && (k.Kind != KindEmail || l.Email != "") {
				add(k)
			}
		}
	}
	return out, nil
}

// finishErase shreds the lead's keys (keyIDs: every key its events name)
// and releases the identities the erasure names, where they still point at
// the lead. The keys go first: LeadErased names what to release, so a
// release failing leaves no personal data readable while it is retried.
// Both are idempotent, so an erasure cut short is finished by asking
// again.
func (a *App) finishErase(ctx context.Context, leadID string, released []*eventv1.Identity, keyIDs []string, eventID string) error {
	if err := a.keys.Shred(ctx, leadID, keyIDs...); err != nil {
		return err
	}
	keys := make([]ClaimKey, len(released))
	for i, id := range released {
		keys[i] = ClaimKey{Kind: id.GetKind(), Token: id.GetToken()}
	}
	// Shredded: what is left undone releases identities, which hides no
	// data (unfinishedErasure).
	held, err := a.leads.Holders(ctx, keys...)
	if err != nil {
		return &unfinishedErasure{err}
	}
	var errs []error
	for _, k := range keys {
		errs = append(errs, a.release(ctx, k, held[k], leadID, eventID))
	}
	if err := errors.Join(errs...); err != nil {
		return &unfinishedErasure{fmt.Errorf("release identities of %s: %w", leadID, err)}
	}
	return nil
}

// sealedKeyIDs names the keys that sealed anything in recs: every bytes
// field whose name starts with "sealed", at any depth, so a sealed field
// added later is shredded without a change here.
func sealedKeyIDs(recs []eventstore.Record) []string {
	seen := map[string]bool{}
	var out []string
	for i, r := range recs {
		if givenBackLater(recs[i+1:], r.Event) {
			// Sealed with the key of a lead merged in then, and given back
			// to it since: that person's data, for that lead's erasure.
			continue
		}
		eachSealed(r.Event.ProtoReflect(), func(_ string, b []byte) bool {
			// Data that is not sealed data names no key: nothing to shred.
			if id, err := vault.SealedKeyID(b); err == nil && id != "" && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
			return true
		})
	}
	return out
}

// givenBackLater reports whether ev came through a merged lead
// (merged_from) that an unmerge among later gave back.
func givenBackLater(later []eventstore.Record, ev *eventv1.Event) bool {
	var via string
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadResubmitted:
		via = p.LeadResubmitted.GetMergedFrom()
	case *eventv1.Event_ActivityRecorded:
		via = p.ActivityRecorded.GetMergedFrom()
	}
	if via == "" {
		return false
	}
	for _, r := range later {
		if u := r.Event.GetLeadUnmerged(); u != nil && envelope.SurvivorSide(r.Event) && envelope.GivenBack(u, via) {
			return true
		}
	}
	return false
}

// eachSealed calls visit with the name and value of every bytes field of
// m named "sealed*", at any depth, until visit returns false.
func eachSealed(m protoreflect.Message, visit func(name string, b []byte) bool) bool {
	more := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.BytesKind && !fd.IsList() && strings.HasPrefix(string(fd.Name()), "sealed"):
			more = visit(string(fd.Name()), v.Bytes())
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			for i := 0; more && i < v.List().Len(); i++ {
				more = eachSealed(v.List().Get(i).Message(), visit)
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			more = eachSealed(v.Message(), visit)
		}
		return more
	})
	return more
}
