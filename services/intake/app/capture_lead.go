package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/form"
)

// Outcome says what a command did.
type Outcome string

// Outcomes of a capture.
const (
	Created     Outcome = "CREATED"
	Resubmitted Outcome = "RESUBMITTED"
)

// CaptureResult is the answer to a capture.
type CaptureResult struct {
	LeadID  string
	Outcome Outcome
	// Replayed: the idempotency key was seen before; this is the first
	// answer again and nothing was written.
	Replayed bool
	Version  uint64
}

// CaptureLead records one form fill. A new identity (normalized email,
// external id) creates a lead; a known one is recorded on its lead as
// LeadResubmitted, on the survivor when that lead was merged. The
// external id is the stronger match. Every identity the capture brings
// is claimed for its lead; one already held by another lead makes the
// two a merge candidate, recorded on both.
//
// A new person's lead id is derived from their email (vault.BlindID), so
// the lead's own subject is the email's claim: the server lets exactly one
// first event be stored under that id, whoever races. Only after an
// erasure released the email does a new lead get a fresh id, claimed
// first; a claim whose lead has no event yet (its writer crashed, or is
// about to write) is adopted by the next capture, which writes the event.
//
// A repeated idempotency key returns the first answer from the key's
// record and writes nothing; reused with other content it is refused.
//
// Errors: *ValidationError, *KeyReusedError, an error matching
// eventstore.ErrConflict when the lead kept changing under us.
func (a *App) CaptureLead(ctx context.Context, in form.Capture, meta envelope.Meta) (CaptureResult, error) {
	now := a.now()
	lead, v := form.CheckCapture(in, now)
	if err := a.checkCampaign(ctx, &v, "attribution.campaign_id", lead.Attribution.GetCampaignId()); err != nil {
		return CaptureResult{}, err
	}
	if err := invalid(v); err != nil {
		return CaptureResult{}, err
	}
	return a.capture(ctx, lead, a.identity(lead), meta, nil)
}

// capture is CaptureLead for a checked lead; held, when set, is what its
// identities' holders were a moment ago (a bulk import's look-up), for
// the first attempt.
func (a *App) capture(ctx context.Context, lead form.Lead, ids identities, meta envelope.Meta, held map[ClaimKey]Holder) (CaptureResult, error) {
	key, err := a.captureKey(lead)
	if err != nil {
		return CaptureResult{}, err
	}
	return a.captureWith(ctx, key, lead, ids, meta, held)
}

// captureWith is capture under the idempotency key key.
func (a *App) captureWith(ctx context.Context, key idemKey, lead form.Lead, ids identities, meta envelope.Meta, held map[ClaimKey]Holder) (CaptureResult, error) {
	run := newCaptureRun(lead, ids, meta, held)
	if key.token == "" && run.ids.ext.Token == "" && !a.known.has(run.ids.email.Token) {
		// Most captures are a new person with an email alone: try the
		// write first, in one round trip.
		res, ok, err := a.fastCapture(ctx, run)
		if err != nil {
			return res, err
		}
		if ok {
			a.known.add(run.ids.email.Token)
			return res, nil
		}
	}
	ans, err := a.once(ctx, key, func(ctx context.Context) (*plan, error) {
		return a.planCapture(ctx, run)
	})
	if err != nil {
		return CaptureResult{}, err
	}
	a.known.add(run.ids.email.Token)
	if ans.Replayed {
		a.completeReplayed(ctx, run, ans)
	}
	if !key.latest && lead.ExternalID.GetId() != "" {
		a.supersede(ctx, lead.ExternalID, ans.Version)
	}
	return CaptureResult{LeadID: ans.LeadID, Outcome: ans.Outcome, Replayed: ans.Replayed, Version: ans.Version}, nil
}

// completeReplayed writes what a replayed capture's follow-ups (claims,
// merge candidates) left undone: a process killed between a capture's
// event and them leaves them to whoever sends the capture again, and the
// caller's retry with the same key is the one sure to come. With nothing
// missing it writes nothing and reads the holders at most (an import
// brings them). A lead erased since, or merged into one erased since,
// keeps no claims.
func (a *App) completeReplayed(ctx context.Context, run *captureRun, ans answer) {
	held := run.held
	if held == nil {
		var err error
		if held, err = a.leads.Holders(ctx, run.ids.all()...); err != nil {
			a.log.WarnContext(ctx, "replayed capture's follow-ups not checked", "lead", ans.LeadID, "err", err)
			return
		}
	}
	// Claimed for the merged lead it came through, if it did (planCapture),
	// whether that lead is merged still or was unmerged since.
	via := cmp.Or(ans.event.GetLeadResubmitted().GetMergedFrom(), ans.LeadID)
	due := false
	for _, k := range run.ids.all() {
		h := held[k]
		own := h.LeadID == ans.LeadID || h.LeadID == via ||
			(h.LeadID == "" && k.Kind == KindEmail && (k.Token == ans.LeadID || k.Token == via))
		due = due || !own
	}
	if !due {
		return
	}
	head, err := a.leads.Head(ctx, ans.LeadID)
	lead := ans.LeadID
	if err == nil && head != nil {
		if st, _ := headState(head); st.Status == lifecycle.StatusMerged {
			// Merged since: claimed for via still, as a capture through a
			// merged lead is (planCapture), unless the survivor is erased.
			lead, head, err = a.follow(ctx, ans.LeadID, head)
		}
	}
	if err == nil && head != nil {
		if st, _ := headState(head); st.Status == lifecycle.StatusMerged || st.Status == lifecycle.StatusErased {
			return
		}
		if via != ans.LeadID {
			// The lead claimed for, unmerged and erased since, released
			// its person: claiming again would hand them back to it.
			var vh *eventstore.Record
			if vh, err = a.leads.Head(ctx, via); err == nil && vh != nil {
				if st, _ := headState(vh); st.Status == lifecycle.StatusErased {
					return
				}
			}
		}
		if err == nil {
			err = a.claimRest(lead, via, run.ids, held, run.meta)(ctx, ans.event)
		}
	}
	if err != nil && ctx.Err() == nil {
		a.log.WarnContext(ctx, "replayed capture's follow-ups failed; the next capture retries them", "lead", ans.LeadID, "err", err)
	}
}

// knownSet remembers emails this process has seen captured, by token: a
// capture of one skips the write-first attempt, which would lose its race
// and cost a round trip, and reads first. It is a hint, bounded and
// forgetful; correctness never depends on it.
type knownSet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

// maxKnown bounds the hint: forgetting everything at once is cheap and
// rare, and costs only round trips.
const maxKnown = 1 << 18

func (k *knownSet) has(token string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.m[token]
	return ok
}

func (k *knownSet) add(token string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil || len(k.m) >= maxKnown {
		k.m = make(map[string]struct{})
	}
	k.m[token] = struct{}{}
}

// captureRun is one capture across its attempts.
type captureRun struct {
	l    form.Lead
	ids  identities
	meta envelope.Meta
	// keys are data keys taken for this capture, by lead: a later
	// attempt on the same lead seals with the same key.
	keys map[string]*vault.Key
	// held, when set, serves the first attempt instead of a look-up.
	held map[ClaimKey]Holder
}

// newCaptureRun starts a capture of lead; its events carry the lead's
// idempotency key and time.
func newCaptureRun(lead form.Lead, ids identities, meta envelope.Meta, held map[ClaimKey]Holder) *captureRun {
	meta.IdempotencyKey, meta.OccurredAt = lead.IdempotencyKey, lead.OccurredAt
	return &captureRun{l: lead, ids: ids, meta: meta, keys: map[string]*vault.Key{}, held: held}
}

// newLeadEvent is a new person's first event, under the id derived from
// their email, sealed with a key stored ahead (pkg/vault Take).
func (a *App) newLeadEvent(ctx context.Context, run *captureRun) (*vault.Key, *eventv1.Event, error) {
	key, err := a.keys.Take(ctx, run.ids.email.Token)
	if err != nil {
		return nil, nil, err
	}
	ev, err := a.capturedEvent(key, run.l, run.meta)
	return key, ev, err
}

// fastCapture writes a new person's lead without reading first: the
// first event under the id derived from the email, sealed with a key
// stored ahead (pkg/vault Take), so the event is the capture's only
// write. The server stores it only if nothing holds the email yet;
// otherwise ok is false, and the key serves the slow path when the lead
// is the email's own.
func (a *App) fastCapture(ctx context.Context, run *captureRun) (CaptureResult, bool, error) {
	leadID := run.ids.email.Token
	key, ev, err := a.newLeadEvent(ctx, run)
	if err != nil {
		return CaptureResult{}, false, err
	}
	v, err := a.leads.Create(ctx, leadID, ev)
	if err == nil {
		return CaptureResult{LeadID: leadID, Outcome: Created, Version: v}, true, nil
	}
	if !errors.Is(err, eventstore.ErrConflict) {
		return CaptureResult{}, false, err
	}
	run.keys[leadID] = key
	return CaptureResult{}, false, nil
}

// keyOf is the key a submission to a lead is sealed with: one this
// capture took already, the one this process has cached, else a new one.
func (a *App) keyOf(ctx context.Context, run *captureRun, leadID string) (*vault.Key, error) {
	if k, ok := run.keys[leadID]; ok {
		return k, nil
	}
	k, err := a.sealingKey(ctx, leadID)
	if err == nil {
		run.keys[leadID] = k
	}
	return k, err
}

// sealingKey is the key more of a lead's data is sealed with: the one
// this process used last for the lead, else a new one. A lead may have
// many; erasure shreds every one its events name.
func (a *App) sealingKey(ctx context.Context, leadID string) (*vault.Key, error) {
	if k, ok := a.keys.CachedKey(leadID); ok {
		return k, nil
	}
	return a.keys.Take(ctx, leadID)
}

// captureKey is a capture's idempotency key: the caller's key, over
// everything the normalized request says. Without one, an external id is
// the key. With the time it happened, the other system's record sent
// again with that time is its retry, whenever it comes. Without a time,
// it is a retry only if it says what that record's last capture said;
// with other content it is a new submission, and the one a repeat is
// compared with from then on. So a record that goes back to what it said
// two captures ago (a consent withdrawn, granted, withdrawn again) is
// stored again, not answered as the first one's retry.
func (a *App) captureKey(l form.Lead) (idemKey, error) {
	content := []proto.Message{l.Contact, l.Profile, l.Attribution, l.ExternalID, ts(l.OccurredAt), l.Actor}
	for _, c := range l.Consents {
		content = append(content, c)
	}
	if l.IdempotencyKey != "" || l.ExternalID.GetId() == "" {
		return a.newIdemKey("idempotency_key", "capture", l.IdempotencyKey, content...)
	}
	key, err := a.newIdemKey("external_id", "capture-external", "content", content...)
	if err != nil {
		return idemKey{}, err
	}
	key.untilErased = true
	perContent := a.keys.BlindID("idem-capture-external", externalID(l.ExternalID)+"\x00"+key.fingerprint)
	if l.OccurredAt.IsZero() {
		// Before 2026-12-06 a record without a time was kept per content
		// too: found there, it answers as it did.
		key.token, key.latest, key.legacy = a.lastCaptureToken(l.ExternalID), true, perContent
		return key, nil
	}
	key.token = perContent
	return key, nil
}

func externalID(id *eventv1.ExternalId) string { return id.GetSystem() + "\x00" + id.GetId() }

// lastCaptureToken is the token of the record of an external id's last
// capture sent without a key or a time.
func (a *App) lastCaptureToken(id *eventv1.ExternalId) string {
	return a.keys.BlindID("idem-capture-external-last", externalID(id))
}

// supersede tells an external id's last-capture record (captureKey) that
// a capture of the id sent with a key or a time, answered at version,
// came after it: the record's capture sent again is then new, not a
// retry. A record of a later capture is left as it is. Best effort: a
// failure leaves that one capture to be answered as a retry.
func (a *App) supersede(ctx context.Context, id *eventv1.ExternalId, version uint64) {
	token := a.lastCaptureToken(id)
	rec, seq, err := a.leads.Record(ctx, token)
	if err == nil && rec != nil && rec.GetFingerprint() != "" && rec.GetVersionBefore() < version {
		next := proto.CloneOf(rec)
		next.Fingerprint = ""
		_, err = a.leads.PutRecord(ctx, token, next, seq)
	}
	if err != nil && !errors.Is(err, eventstore.ErrConflict) && ctx.Err() == nil {
		a.log.WarnContext(ctx, "external id's last capture not superseded", "err", err)
	}
}

// identities are the claim keys of one capture.
type identities struct {
	email, ext ClaimKey
}

func (a *App) identity(l form.Lead) identities {
	ids := identities{email: ClaimKey{KindEmail, a.keys.BlindID(KindEmail, l.Email)}}
	if l.ExternalID != nil {
		ids.ext = ClaimKey{KindExt, a.keys.BlindID(KindExt, l.ExternalID.GetSystem()+"\x00"+l.ExternalID.GetId())}
	}
	return ids
}

// all lists the keys, the stronger match first.
func (ids identities) all() []ClaimKey {
	if ids.ext.Token == "" {
		return []ClaimKey{ids.email}
	}
	return []ClaimKey{ids.ext, ids.email}
}

// matchedBy names an identity kind as LeadResubmitted and
// MergeCandidateFound do.
func matchedBy(kind string) string {
	if kind == KindExt {
		return "external_id"
	}
	return kind
}

// planCapture decides one attempt of a capture from the holders of its
// identities: create a lead, adopt a claimed one without events, or
// resubmit on the holder.
func (a *App) planCapture(ctx context.Context, run *captureRun) (*plan, error) {
	l, ids, meta := run.l, run.ids, run.meta
	held := run.held
	run.held = nil
	if held == nil {
		var err error
		if held, err = a.leads.Holders(ctx, ids.all()...); err != nil {
			return nil, err
		}
	}
	var (
		target, matched string
		head            *eventstore.Record
	)
	for _, k := range ids.all() {
		if h := held[k]; h.LeadID != "" {
			target, matched, head = h.LeadID, k.Kind, h.Head
			break
		}
	}
	if target == "" {
		return a.planNew(ctx, run, held)
	}
	final, head, err := a.follow(ctx, target, head)
	if err != nil {
		return nil, err
	}
	if head == nil {
		// A claim whose lead was never written: adopt it.
		return a.planFirst(ctx, run, final, held, nil, nil)
	}
	state, version := headState(head)
	if state.Status == lifecycle.StatusErased {
		// An erasure cut short before it released its claims: finish
		// that, then the person is new.
		if err := a.releaseStale(ctx, []string{target, final}, ids, held, head.Event.GetEventId()); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("identity held by erased lead %s: %w", final, eventstore.ErrConflict)
	}
	// Sent on from a merged lead, it is that person's: sealed with that
	// lead's key (and under its id), so its erasure after an unmerge
	// reaches it, and its new identities are claimed for it, which
	// captures follow to the survivor while the merge lasts.
	key, err := a.keyOf(ctx, run, target)
	if err != nil {
		return nil, err
	}
	sealed, err := sealPersonal(key, l)
	if err != nil {
		return nil, err
	}
	profile, attribution := coarse(l)
	payload := &eventv1.LeadResubmitted{SealedPersonal: sealed, Profile: profile, Attribution: attribution, MatchedBy: matchedBy(matched)}
	if final != target {
		payload.MergedFrom = target
	}
	ev, _, err := a.leadEvent(final, state, lifecycle.Command{Name: lifecycle.Resubmit}, payload, meta, a.now())
	if err != nil {
		return nil, err
	}
	via := ""
	if final != target {
		via = target
	}
	more, err := a.consentChanges(ctx, final, via, state, version, l, meta)
	if err != nil {
		return nil, err
	}
	return &plan{leadID: final, event: ev, more: more, outcome: Resubmitted, expect: version,
		then: a.claimRest(final, target, ids, held, meta)}, nil
}

// consentChanges are the ConsentChanged events a resubmission's consents
// make: one for each channel whose word they change (heard), so a form
// that withdraws a channel is heard like SetConsent. Only then is the
// lead read whole (its consents as of version).
func (a *App) consentChanges(ctx context.Context, leadID, via string, state lifecycle.State, version uint64, l form.Lead, meta envelope.Meta) ([]*eventv1.Event, error) {
	if len(l.Consents) == 0 {
		return nil, nil
	}
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return nil, err
	}
	now, said := consentsAsOf(recs, version), consentTimes(recs, version)
	var out []*eventv1.Event
	for _, c := range l.Consents {
		w := consentWord{c.GetStatus(), via}
		// An older form's grant (a backfill) does not overrule a word its
		// person wrote since (through the same lead: another person's is
		// not theirs to keep). A withdrawal is always heard: clocks differ,
		// and contacting against a withdrawal is the worse mistake.
		t, ok := said[saidKey{c.GetChannel(), via}]
		older := ok && c.GetStatus() == eventv1.ConsentStatus_CONSENT_STATUS_GRANTED && !l.OccurredAt.IsZero() && l.OccurredAt.Before(t)
		if older || !w.heard(now, c.GetChannel()) {
			// Unchanged, so nothing to write, unless an unmerge cut off
			// still owes the lead an older change of it (as SetConsent).
			if err := a.owedFirst(ctx, leadID, recs); err != nil {
				return nil, err
			}
			continue
		}
		now[c.GetChannel()] = w
		ev, _, err := a.leadEvent(leadID, state, lifecycle.Command{Name: lifecycle.ChangeConsent},
			&eventv1.ConsentChanged{Consent: c, Source: ResubmissionSource, MergedFrom: via}, meta, a.now())
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// consentWord is a channel's last consent change: its status, and the
// merged lead it was sent to ("" for the lead's own; carried for one a
// merge or an unmerge wrote, which no person said on this lead).
type consentWord struct {
	status eventv1.ConsentStatus
	via    string
}

// heard reports whether w changes its channel's word in now: its status,
// or who said it. A status the channel has already, from someone else,
// is written when sent through a merged lead (an unmerge gives it back to
// that lead) and when it is the lead's own after one sent so (the unmerge
// leaves it on the lead).
func (w consentWord) heard(now map[eventv1.ConsentChannel]consentWord, ch eventv1.ConsentChannel) bool {
	last, ok := now[ch]
	return !ok || last != w
}

// carried is the via of a consent word a merge or an unmerge wrote: not
// a lead id, so the person's own word of the same status is heard (and
// outlasts an unmerge, which gives back only what it finds unchanged).
const carried = "(carried by a merge)"

// consentsAsOf is each channel's last consent word in a lead's events as
// of version.
func consentsAsOf(recs []eventstore.Record, version uint64) map[eventv1.ConsentChannel]consentWord {
	now := map[eventv1.ConsentChannel]consentWord{}
	for _, r := range recs {
		if r.Seq > version {
			break
		}
		for _, c := range r.Event.GetLeadCaptured().GetConsents() {
			now[c.GetChannel()] = consentWord{c.GetStatus(), ""}
		}
		if cc := r.Event.GetConsentChanged(); cc.GetConsent() != nil {
			via := cc.GetMergedFrom()
			if cc.GetSource() == consentFromMerge {
				via = carried
			}
			now[cc.GetConsent().GetChannel()] = consentWord{cc.GetConsent().GetStatus(), via}
		}
	}
	return now
}

// saidKey is a consent channel and the merged lead its word came
// through ("" for the lead's own).
type saidKey struct {
	ch  eventv1.ConsentChannel
	via string
}

// consentTimes is when each channel's last word that a person wrote on a
// lead (as of version; not one a merge or an unmerge carried, dated by
// that) says it was said (occurred_at), by the lead it came through.
func consentTimes(recs []eventstore.Record, version uint64) map[saidKey]time.Time {
	at := map[saidKey]time.Time{}
	for _, r := range recs {
		if r.Seq > version {
			break
		}
		t := r.Event.GetOccurredAt().AsTime()
		for _, c := range r.Event.GetLeadCaptured().GetConsents() {
			at[saidKey{c.GetChannel(), ""}] = t
		}
		if cc := r.Event.GetConsentChanged(); cc.GetConsent() != nil && cc.GetSource() != consentFromMerge {
			at[saidKey{cc.GetConsent().GetChannel(), cc.GetMergedFrom()}] = t
		}
	}
	return at
}

// ResubmissionSource is the source of the consent changes a resubmission
// brings.
const ResubmissionSource = "resubmission"

// planNew creates a lead for a person no lead holds: under the id derived
// from their email, or, when an erasure released that email (its derived
// id is the erased lead's), under a fresh id claimed first.
func (a *App) planNew(ctx context.Context, run *captureRun, held map[ClaimKey]Holder) (*plan, error) {
	eh := held[run.ids.email]
	if eh.Seq == 0 {
		return a.planFirst(ctx, run, run.ids.email.Token, held, nil, nil)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	leadID := id.String()
	claim := Claim{Key: run.ids.email, Claim: claimFor(leadID, run.ids.email)}
	return a.planFirst(ctx, run, leadID, held, []Claim{claim}, []Holder{eh})
}

// planFirst writes a lead's first event after the claims in before.
func (a *App) planFirst(ctx context.Context, run *captureRun, leadID string, held map[ClaimKey]Holder, before []Claim, seen []Holder) (*plan, error) {
	key, err := a.keyOf(ctx, run, leadID)
	if err != nil {
		return nil, err
	}
	ev, err := a.capturedEvent(key, run.l, run.meta)
	if err != nil {
		return nil, err
	}
	return &plan{leadID: leadID, event: ev, outcome: Created, create: true, before: before, seen: seen,
		then: a.claimRest(leadID, leadID, run.ids, held, run.meta)}, nil
}

// claimRest claims, after a capture's event, every identity it brought
// that nobody holds, for via, the lead the capture matched before
// following merges (lead, where it went, when none); an identity another
// lead holds makes that lead and lead a merge candidate.
func (a *App) claimRest(lead, via string, ids identities, held map[ClaimKey]Holder, meta envelope.Meta) func(context.Context, *eventv1.Event) error {
	return func(ctx context.Context, ev *eventv1.Event) error {
		var errs []error
		for _, k := range ids.all() {
			h := held[k]
			if h.LeadID == "" {
				// An email's derived id is the lead itself: nothing to claim.
				if k.Kind == KindEmail && (k.Token == lead || k.Token == via) {
					continue
				}
				err := a.leads.Claim(ctx, k, h, claimFor(via, k))
				if !errors.Is(err, eventstore.ErrConflict) {
					errs = append(errs, err)
					continue
				}
				h = Holder{} // taken meanwhile: by whom? (holderOf)
			}
			if h.LeadID == lead || h.LeadID == via {
				continue // ours: no read
			}
			other, head, err := a.holderOf(ctx, k, h)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if other == "" || other == lead {
				continue
			}
			if st, _ := headState(head); st.Status == lifecycle.StatusErased {
				// Held by an erased lead (its releases not done yet, or a
				// claim made through a lead merged into it): no person to
				// be a candidate with; the identity is this lead's now.
				errs = append(errs, a.takeOver(ctx, k, via, ev.GetEventId()))
				continue
			}
			errs = append(errs, a.recordCandidate(ctx, lead, other, k.Kind, ev.GetEventId(), meta))
		}
		return errors.Join(errs...)
	}
}

// holderOf is the lead that holds k, after merges, and its last event,
// when it has events: h, or whoever the claim names now when h is empty
// (our claim lost a race). A holder read as nobody after a lost claim (a
// replica behind answered) or whose lead has no event yet (its capture is
// between its claim and its event) is read again for up to about a
// second: skipped, the two leads of one person would not be recorded as a
// candidate.
func (a *App) holderOf(ctx context.Context, k ClaimKey, h Holder) (string, *eventstore.Record, error) {
	const tries = 6 // 25 ms doubling: 0.8 s in all
	for try := 0; ; try++ {
		if h.LeadID == "" {
			now, err := a.leads.Holders(ctx, k)
			if err != nil {
				return "", nil, err
			}
			h = now[k]
		}
		if h.LeadID != "" {
			other, head, err := a.follow(ctx, h.LeadID, nil)
			if err != nil || head != nil {
				return other, head, err
			}
		}
		if try == tries-1 {
			return "", nil, nil // a claim whose capture died: the next capture adopts it
		}
		t := time.NewTimer(25 * time.Millisecond << try)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", nil, ctx.Err()
		case <-t.C:
		}
	}
}

// takeOver releases identity k from the erased lead holding it and claims
// it for leadID. A capture taking it meanwhile wins: the next capture
// with the identity records what it finds.
func (a *App) takeOver(ctx context.Context, k ClaimKey, leadID, eventID string) error {
	held, err := a.leads.Holders(ctx, k)
	if err != nil {
		return err
	}
	if h := held[k]; h.LeadID != "" {
		// Still held by an erased lead (or one merged into it)? A claim
		// taken meanwhile by a live lead is not ours to release; release
		// then lets go only of the one it read.
		_, head, err := a.follow(ctx, h.LeadID, nil)
		if err != nil || head == nil {
			return err
		}
		if st, _ := headState(head); st.Status != lifecycle.StatusErased {
			return nil
		}
		if err := a.release(ctx, k, h, h.LeadID, eventID); err != nil {
			return err
		}
		if held, err = a.leads.Holders(ctx, k); err != nil {
			return err
		}
	}
	if held[k].LeadID != "" {
		return nil
	}
	err = a.leads.Claim(ctx, k, held[k], claimFor(leadID, k))
	if errors.Is(err, eventstore.ErrConflict) {
		return nil
	}
	return err
}

// claimFor is a claim of key for a lead. Its id is unique per write, so
// that the store recognises a retried write as this one.
func claimFor(leadID string, key ClaimKey) *eventv1.Claim {
	return &eventv1.Claim{LeadId: leadID, EventId: "claim-" + key.Kind + "-" + uuid.NewString()}
}

// maxHops bounds how many merges a capture follows: a chain longer than
// that is a loop nobody should have made.
const maxHops = 8

// follow goes from a lead to the survivor it was merged into, if any,
// and returns that lead and its last event (nil: no events).
func (a *App) follow(ctx context.Context, leadID string, head *eventstore.Record) (string, *eventstore.Record, error) {
	for range maxHops {
		if head == nil {
			var err error
			if head, err = a.leads.Head(ctx, leadID); err != nil || head == nil {
				return leadID, nil, err
			}
		}
		state, _ := headState(head)
		if state.Status != lifecycle.StatusMerged {
			if !mayBeOwed(head.Event, leadID) {
				return leadID, head, nil
			}
			// Cut off inside an unmerge's replays: written after this
			// command, an older replay (a grant) would stand over the
			// person's newer word (a withdrawal). The rest first.
			if err := a.FinishUnmerge(ctx, leadID); err != nil {
				return leadID, nil, err
			}
			head, err := a.leads.Head(ctx, leadID)
			return leadID, head, err
		}
		survivor := head.Event.GetLeadMerged().GetSurvivorLeadId()
		if survivor == "" {
			return leadID, head, nil
		}
		leadID, head = survivor, nil
	}
	return "", nil, fmt.Errorf("lead %s: more than %d merges in a row", leadID, maxHops)
}

// capturedEvent is a new lead's LeadCaptured, its personal fields sealed
// with key.
func (a *App) capturedEvent(key *vault.Key, l form.Lead, meta envelope.Meta) (*eventv1.Event, error) {
	sealed, err := sealPersonal(key, l)
	if err != nil {
		return nil, err
	}
	profile, attribution := coarse(l)
	payload := &eventv1.LeadCaptured{
		SealedPersonal: sealed,
		Profile:        profile,
		Attribution:    attribution,
		Consents:       l.Consents,
	}
	if l.ExternalID != nil {
		payload.ExternalIdSystem = l.ExternalID.GetSystem()
	}
	ev, _, err := a.leadEvent(key.LeadID(), lifecycle.State{}, lifecycle.Command{Name: lifecycle.Capture}, payload, meta, a.now())
	return ev, err
}

// personalOf gathers a submission's personal fields, to be sealed.
func personalOf(l form.Lead) *eventv1.Personal {
	return &eventv1.Personal{
		Contact:     l.Contact,
		Company:     l.Profile.GetCompany(),
		Title:       l.Profile.GetTitle(),
		UtmSource:   l.Attribution.GetUtmSource(),
		UtmMedium:   l.Attribution.GetUtmMedium(),
		UtmCampaign: l.Attribution.GetUtmCampaign(),
		ExternalId:  l.ExternalID,
	}
}

// coarse is what of a submission stays in the clear, for scoring and
// routing: the profile without company and title, the attribution
// without UTM tags.
func coarse(l form.Lead) (*eventv1.Profile, *eventv1.Attribution) {
	p := proto.Clone(l.Profile).(*eventv1.Profile)
	p.Company, p.Title = "", ""
	at := proto.Clone(l.Attribution).(*eventv1.Attribution)
	at.UtmSource, at.UtmMedium, at.UtmCampaign = "", "", ""
	return p, at
}

func sealPersonal(key *vault.Key, l form.Lead) ([]byte, error) {
	plain, err := proto.Marshal(personalOf(l))
	if err != nil {
		return nil, err
	}
	return key.Seal(plain)
}

// checkCampaign adds a violation when a campaign id is given but unknown.
func (a *App) checkCampaign(ctx context.Context, v *form.Violations, field, id string) error {
	if id == "" {
		return nil
	}
	if slices.ContainsFunc(*v, func(x form.Violation) bool { return x.Field == field }) {
		return nil // already refused for its form
	}
	ok, err := a.campaigns.Exists(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		v.Add(field, "names no registered campaign")
	}
	return nil
}
