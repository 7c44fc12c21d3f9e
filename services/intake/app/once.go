package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// Outcomes recorded for commands other than captures.
const (
	Recorded Outcome = "RECORDED"
)

// answer is what a command on a lead answers, the first time and to
// every repeat of it.
type answer struct {
	LeadID   string
	Outcome  Outcome
	Version  uint64
	Replayed bool
	// event is the command's stored event, on a replay.
	event *eventv1.Event
}

// plan is one decided attempt of a command: one event on one lead, the
// claims that must be held before it and what follows it.
type plan struct {
	leadID string
	event  *eventv1.Event
	// more are events appended with event, after it (the consent
	// changes a resubmission brings).
	more    []*eventv1.Event
	outcome Outcome
	// expect is the lead's version the event is appended at; with create,
	// the event is the lead's first (expect 0).
	expect uint64
	create bool
	// before are claims to take first (a released identity's new lead):
	// the lead exists only once they hold.
	before []Claim
	// seen is what each claim in before saw.
	seen []Holder
	// then runs after the event is stored; it writes what the event
	// makes due (more claims, merge candidates). Its failure is logged,
	// not returned: the command is done, and a repeat completes it.
	then func(ctx context.Context, stored *eventv1.Event) error
	// done, when set, is the answer without writing anything.
	done *answer
}

// idemKey is the idempotency key of a command: the token of its record
// (empty: the command has none) and the fingerprint of its content.
type idemKey struct {
	field       string
	token       string
	fingerprint string
	// pure: the command's decide only reads, so its first attempt may run
	// beside the record's look-up and be dropped when the record answers.
	pure bool
	// untilErased: the record answers only while its lead is not erased
	// (a key the caller did not choose: the person captured again after
	// an erasure is new).
	untilErased bool
	// latest: the token names the sender, not the request, and its record
	// holds the sender's last request: other content is a new request
	// that replaces it, not a reuse.
	latest bool
	// legacy, when set, is the token an older intake kept this request's
	// record under, read when token has none: a repeat answers as it did.
	legacy string
}

// newIdemKey is the key of a request: kind scopes the caller's key (a
// capture key and a consent key may be equal), content is everything the
// request says, so that the same key with other content is told apart.
func (a *App) newIdemKey(field, kind, key string, content ...proto.Message) (idemKey, error) {
	if key == "" {
		return idemKey{}, nil
	}
	var b []byte
	for _, m := range content {
		if m == nil || !m.ProtoReflect().IsValid() {
			b = append(b, 0)
			continue
		}
		// Deterministic, and length-prefixed so that fields cannot slide
		// from one message into the next.
		mb, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return idemKey{}, fmt.Errorf("fingerprint %s: %w", field, err)
		}
		b = fmt.Appendf(b, "%d:", len(mb))
		b = append(b, mb...)
	}
	return idemKey{
		field:       field,
		token:       a.keys.BlindID("idem-"+kind, key),
		fingerprint: a.keys.Blind("fingerprint-"+kind, string(b)),
	}, nil
}

// once runs a command on a lead at most once per idempotency key. It
// decides, writes the key's record, then the event; a repeat finds the
// record with one read and answers from it, writing nothing. The record
// is written first so that a crash between the two leaves a record whose
// event is missing, which the next repeat completes, rather than an event
// whose repeat would be stored again. Every attempt for one key writes the
// same event id, so the server keeps at most one of two racing attempts.
// Without a key it is the plain read-decide-append loop.
//
// decide may return a plan whose done answer needs no write. A lost race
// (errors matching eventstore.ErrConflict) makes once decide again.
//
// Errors: *KeyReusedError, decide's, the store's; eventstore.ErrConflict
// after maxRaces lost races.
func (a *App) once(ctx context.Context, key idemKey, decide func(context.Context) (*plan, error)) (answer, error) {
	var (
		rec    *eventv1.IdempotencyRecord
		recSeq uint64
		// early is decide's first attempt, made beside the look-up.
		early    *plan
		earlyErr error
		decided  bool
		// ours: rec is the record this call wrote; rival: this call has
		// seen a record another attempt of the key wrote.
		ours, rival bool
	)
	if key.token != "" {
		var wg sync.WaitGroup
		if key.pure {
			decided = true
			wg.Go(func() { early, earlyErr = decide(ctx) })
		}
		var (
			legacy    *eventv1.IdempotencyRecord
			legacyErr error
		)
		if key.legacy != "" {
			wg.Go(func() { legacy, _, legacyErr = a.leads.Record(ctx, key.legacy) })
		}
		var err error
		rec, recSeq, err = a.leads.Record(ctx, key.token)
		wg.Wait()
		if err != nil {
			return answer{}, err
		}
		if rec == nil && legacy != nil {
			if ans, ok, err := a.answerOf(ctx, key, legacy, true); err != nil && !errors.Is(err, errStale) {
				return answer{}, err
			} else if ok {
				return ans, nil
			}
		} else if rec == nil && legacyErr != nil {
			return answer{}, legacyErr
		}
		rival = rec != nil
		if rec != nil {
			if ans, ok, err := a.answerOf(ctx, key, rec, true); errors.Is(err, errStale) {
				rec = nil // its event id is the erased lead's
			} else if err != nil || ok {
				return ans, err
			}
		}
	}
	for attempt := range maxRaces {
		p, err := early, earlyErr
		if !decided {
			p, err = decide(ctx)
		}
		decided = false
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return answer{}, err
			}
			continue
		}
		if err != nil {
			return answer{}, err
		}
		if p.done != nil {
			return *p.done, nil
		}
		if rec != nil {
			// The record's event was not stored when we looked: a racing
			// repeat's still in flight, or cut short, or ours, whose append
			// lost a race. Look again now that decide has read the lead,
			// before writing: what was stored before that read shows here,
			// and what is stored after it makes our append conflict. (A
			// repeat's commit of several events carries no message id the
			// server would drop a second copy by.) Our own record points
			// where its event would be, unless a rival's commit landed
			// past it (our read of the lead was behind theirs): with no
			// rival seen, no search of the history.
			if ans, ok, err := a.answerOf(ctx, key, rec, !ours || rival); errors.Is(err, errStale) {
				rec = nil
			} else if err != nil || ok {
				return ans, err
			}
		}
		if key.token != "" {
			if rec != nil {
				p.event.EventId = rec.GetEventId()
			}
			next := &eventv1.IdempotencyRecord{LeadId: p.leadID, EventId: p.event.GetEventId(),
				VersionBefore: p.expect, Outcome: string(p.outcome), Fingerprint: key.fingerprint, More: uint32(len(p.more))}
			seq, err := a.leads.PutRecord(ctx, key.token, next, recSeq)
			if errors.Is(err, eventstore.ErrConflict) {
				// A racing repeat wrote first: take its record over.
				if rec, recSeq, err = a.leads.Record(ctx, key.token); err != nil {
					return answer{}, err
				}
				ours = false
				rival = rival || rec != nil
				if rec != nil {
					if ans, ok, err := a.answerOf(ctx, key, rec, true); errors.Is(err, errStale) {
						rec = nil
					} else if err != nil || ok {
						return ans, err
					}
				}
				if err := eventstore.AfterConflict(ctx, attempt); err != nil {
					return answer{}, err
				}
				continue
			}
			if err != nil {
				return answer{}, err
			}
			rec, recSeq, ours = next, seq, true
		}
		v, err := a.execute(ctx, p)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return answer{}, err
			}
			continue
		}
		if err != nil {
			return answer{}, err
		}
		ans := answer{LeadID: p.leadID, Outcome: p.outcome, Version: v}
		if key.token != "" && v <= p.expect {
			// The server answered an earlier attempt's event, stored
			// before this attempt's version: this request's, or a racing
			// repeat's whose record this attempt found before its event.
			// Answer what is stored, and point the record at it.
			stored, err := a.leads.Get(ctx, v)
			if err != nil {
				return answer{}, err
			}
			ans.LeadID, ans.Outcome = stored.Event.GetLeadId(), outcomeOf(stored.Event, p.outcome)
			if err := a.repoint(ctx, key, rec, recSeq, stored.Event); err != nil {
				a.log.WarnContext(ctx, "idempotency record not re-pointed", "lead", p.leadID, "err", err)
			}
		}
		a.passed(AfterStored, p.leadID)
		if p.then != nil {
			if err := p.then(ctx, p.event); err != nil && ctx.Err() == nil {
				a.log.WarnContext(ctx, "follow-up writes failed; the next capture retries them", "lead", p.leadID, "err", err)
			}
		}
		return ans, nil
	}
	return answer{}, fmt.Errorf("%w after %d races", eventstore.ErrConflict, maxRaces)
}

// errStale is answerOf's for a record that answers the request no more:
// its lead is erased and the key answers only until then (untilErased),
// or it holds the sender's earlier request with other content (latest).
// The request is decided afresh, and its record replaces this one.
var errStale = errors.New("the record answers no more")

// answerOf is the first answer a record stands for, if its event is
// stored: the lead's first event after the record's version (and the
// version of the last event of its commit), with the outcome that event
// stands for. A record of a racing repeat may point past its event (its
// plan's version, written before it found the event stored by the first
// request): then, with search, the lead's history is searched for it.
func (a *App) answerOf(ctx context.Context, key idemKey, rec *eventv1.IdempotencyRecord, search bool) (answer, bool, error) {
	if rec.GetFingerprint() != key.fingerprint {
		if key.latest {
			return answer{}, false, errStale
		}
		return answer{}, false, &KeyReusedError{Field: key.field}
	}
	ev, err := a.leads.After(ctx, rec.GetLeadId(), rec.GetVersionBefore())
	if err != nil {
		return answer{}, false, err
	}
	// The record's plan stored its event where it says: its commit is as
	// long as it says too.
	more := uint64(rec.GetMore())
	if ev == nil || ev.Event.GetEventId() != rec.GetEventId() {
		if !search {
			return answer{}, false, nil
		}
		if ev, more, err = a.find(ctx, rec.GetLeadId(), rec.GetEventId()); ev == nil || err != nil {
			return answer{}, false, err
		}
	}
	if key.untilErased {
		erased, err := a.erasedSince(ctx, rec.GetLeadId(), ev.Event)
		if err != nil {
			return answer{}, false, err
		}
		if erased {
			return answer{}, false, errStale
		}
	}
	return answer{LeadID: rec.GetLeadId(), Outcome: outcomeOf(ev.Event, Outcome(rec.GetOutcome())), Version: ev.Seq + more,
		Replayed: true, event: ev.Event}, true, nil
}

// erasedSince reports whether the person whose capture ev stored on
// leadID is erased: the lead it came through while merged (merged_from),
// whom an unmerge gives it back to, else leadID; a lead merged since
// goes with its survivor.
func (a *App) erasedSince(ctx context.Context, leadID string, ev *eventv1.Event) (bool, error) {
	person := cmp.Or(ev.GetLeadResubmitted().GetMergedFrom(), leadID)
	for range maxHops {
		head, err := a.leads.Head(ctx, person)
		if err != nil {
			return false, err
		}
		switch st, _ := headState(head); {
		case st.Status == lifecycle.StatusErased:
			return true, nil
		case st.Status == lifecycle.StatusMerged && head.Event.GetLeadMerged().GetSurvivorLeadId() != "":
			person = head.Event.GetLeadMerged().GetSurvivorLeadId()
		default:
			return false, nil
		}
	}
	return false, nil
}

// find returns the lead's event with id eventID (nil if it has none) and
// how many events of its commit follow it: a record found pointing
// elsewhere may be another attempt's plan, of another length.
func (a *App) find(ctx context.Context, leadID, eventID string) (*eventstore.Record, uint64, error) {
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return nil, 0, err
	}
	for i := range recs {
		if recs[i].Event.GetEventId() != eventID {
			continue
		}
		more := uint64(0)
		for _, r := range recs[i+1:] {
			if r.Event.GetVersionBefore() != eventstore.VersionUnknown {
				break
			}
			more++
		}
		return &recs[i], more, nil
	}
	return nil, 0, nil
}

// repoint points a record at its stored event: the lead, the version it
// was appended at and the outcome it stands for, read from the event.
func (a *App) repoint(ctx context.Context, key idemKey, rec *eventv1.IdempotencyRecord, recSeq uint64, stored *eventv1.Event) error {
	next := proto.Clone(rec).(*eventv1.IdempotencyRecord)
	next.LeadId = stored.GetLeadId()
	next.VersionBefore = stored.GetVersionBefore()
	next.Outcome = string(outcomeOf(stored, Outcome(rec.GetOutcome())))
	_, err := a.leads.PutRecord(ctx, key.token, next, recSeq)
	return err
}

// outcomeOf is the outcome a capture's stored event stands for, and or
// for any other command's event.
func outcomeOf(ev *eventv1.Event, or Outcome) Outcome {
	switch {
	case ev.GetLeadCaptured() != nil:
		return Created
	case ev.GetLeadResubmitted() != nil:
		return Resubmitted
	}
	return or
}

// execute writes a plan: its claims first, then its event. The key the
// event is sealed with was stored ahead (pkg/vault Take).
func (a *App) execute(ctx context.Context, p *plan) (uint64, error) {
	for i, c := range p.before {
		if err := a.leads.Claim(ctx, c.Key, p.seen[i], c.Claim); err != nil {
			return 0, err
		}
	}
	if len(p.before) > 0 {
		a.passed(AfterClaims, p.leadID)
	}
	if p.create {
		return a.leads.Create(ctx, p.leadID, p.event)
	}
	return a.leads.Append(ctx, p.leadID, p.expect, append([]*eventv1.Event{p.event}, p.more...)...)
}
