package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// LostQuery says how to judge the invariant.
type LostQuery struct {
	// AsOf is when deadlines are judged; zero: now.
	AsOf time.Time
	// OverdueGrace: a deadline missed by less is not reported.
	OverdueGrace time.Duration
	// ClaimGrace: a claim younger than this is not reported; 0: 1 minute.
	ClaimGrace time.Duration
	// Limit caps the lost leads listed; 0: DefaultLostLimit.
	Limit int
	// After pages the listing: only the leads after this one in its order
	// (longest stuck first, then by lead id) are listed. Its page was
	// judged at the same AsOf, or the order has moved.
	After *LostCursor
}

// LostCursor is a lead's place in the lost leads' order.
type LostCursor struct {
	StuckFor time.Duration
	LeadID   string
}

// Limits on the lost leads one answer lists.
const (
	DefaultLostLimit  = 1000
	MaxLostLimit      = 10000
	defaultClaimGrace = time.Minute
)

// LostReason is how a lead breaks the invariant.
type LostReason int

// The reasons, in the order they are tried: a lead is reported once.
const (
	LostUnknownStatus LostReason = iota + 1
	LostNoOwner
	LostNoDeadline
	LostDropped
	LostStalled
	LostOverdue
)

// LostLead is a lead that breaks the invariant.
type LostLead struct {
	Head
	Reason      LostReason
	MissingStep string
	Detail      string
	StuckFor    time.Duration
}

// ParkedLead is a lead waiting behind a dead letter.
type ParkedLead struct {
	consume.DeadLetter
	DeadEventType string
	Status        lifecycle.Status
	StuckFor      time.Duration
	// Last is the lead's last event, and MissingStep what should follow.
	Last        Head
	MissingStep string
}

// OrphanClaim is an identity claim whose lead has no events.
type OrphanClaim struct {
	ClaimHead
	Age time.Duration
}

// LostReport is the answer of the no-lost-lead check.
type LostReport struct {
	AsOf         time.Time
	StreamSeq    uint64
	LeadsChecked int
	Lost         []LostLead
	TotalLost    int
	Parked       []ParkedLead
	OrphanClaims []OrphanClaim
	Took         time.Duration
}

// FindLostLeads checks the no-lost-lead invariant over every lead: every
// lead that is not in a terminal state has an owner and a deadline for
// its next step (lifecycle.Check), the deadline has not passed, and a
// lead waiting for nurture's next step (LOST, RECYCLED in the nurture
// queue, an attempts-exhausted breach) was not passed over by nurture's
// consumer group (its last event is behind the group's ack floor). It
// also lists every lead parked behind a dead letter, of every group (a
// dead letter whose key is not a lead id parks no lead, and is left
// out), and every identity claim whose lead has no events. A lead
// waiting in the queue of qualification or handoff while that group is
// stopped (it ran before and has no live member) is lost too: nobody
// will take its step before its deadline passes. It reads the index of
// every lead's last event, caught up to the stream when called.
//
// Errors: *ValidationError (limit, a negative grace), store errors.
func (a *App) FindLostLeads(ctx context.Context, q LostQuery) (LostReport, error) {
	start := time.Now()
	switch {
	case q.Limit == 0:
		q.Limit = DefaultLostLimit
	case q.Limit < 0 || q.Limit > MaxLostLimit:
		return LostReport{}, &ValidationError{Violations: []Violation{{Field: "limit", Description: fmt.Sprintf("must be at most %d", MaxLostLimit)}}}
	}
	var v violations
	if q.OverdueGrace < 0 {
		v.add("overdue_grace", "must not be negative")
	}
	if q.ClaimGrace < 0 {
		v.add("claim_grace", "must not be negative")
	}
	if err := v.err(); err != nil {
		return LostReport{}, err
	}
	if q.ClaimGrace == 0 {
		q.ClaimGrace = defaultClaimGrace
	}
	if q.AsOf.IsZero() {
		q.AsOf = a.now()
	}
	// The ack floors are read before the leads: nurture appends a lead's
	// next step before it acknowledges the event that asked for it, so a
	// lead behind a floor read first shows that step, if it was taken.
	floors, err := a.groups.AckFloors(ctx, Group)
	if err != nil {
		return LostReport{}, err
	}
	// Then the dead letters, so a lead parked before the floors were read
	// (its dead event is behind the floor) is known as parked.
	dls, err := a.groups.DeadLetters(ctx)
	if err != nil {
		return LostReport{}, err
	}
	// The other groups a lead can wait for (nurture itself is running, as
	// it answers this call), asked at once: each is a few round trips.
	stopped := map[lifecycle.Owner]string{}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	for queue, group := range queueGroups {
		wg.Go(func() {
			down, err := a.groups.Stopped(ctx, group)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else if down {
				stopped[queue] = group
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return LostReport{}, err
	}
	parkedHere := map[string]bool{}
	for _, d := range dls {
		if d.Group == Group {
			parkedHere[d.Key] = true
		}
	}
	rep := LostReport{AsOf: q.AsOf}
	rep.StreamSeq, err = a.index.View(ctx, func(v IndexView) {
		rep.LeadsChecked = len(v.Leads)
		for i := range v.Leads {
			if r, ok := judge(&v.Leads[i], floors, parkedHere, stopped, q); ok {
				rep.Lost = append(rep.Lost, r)
			}
		}
		for _, c := range v.Claims {
			if c.LeadID == "" || v.Lead(c.LeadID) != nil || q.AsOf.Sub(c.At) < q.ClaimGrace {
				continue
			}
			rep.OrphanClaims = append(rep.OrphanClaims, OrphanClaim{ClaimHead: *c, Age: q.AsOf.Sub(c.At)})
		}
		for _, d := range dls {
			// Only a dead letter keyed by a lead parks a lead. Groups on
			// other subjects (projector-ref: model_routing, campaign_<id>)
			// park other keys: `leadctl dlq` lists them, and listed here
			// they would sink every RedriveLeads of the parked ids.
			if !envelope.ValidLeadID(d.Key) {
				continue
			}
			p := ParkedLead{DeadLetter: d, StuckFor: q.AsOf.Sub(d.At)}
			if d.At.IsZero() {
				p.StuckFor = 0
			}
			if h := v.Lead(d.Key); h != nil {
				p.Status, p.Last, p.MissingStep = h.State.Status, *h, parkedStep(d.Group, h)
			}
			rep.Parked = append(rep.Parked, p)
		}
	})
	if err != nil {
		return LostReport{}, err
	}
	for i, p := range rep.Parked {
		if p.StreamSeq != 0 && p.Stream == a.leads.Stream() {
			if t, err := a.leads.TypeAt(ctx, p.StreamSeq); err == nil {
				rep.Parked[i].DeadEventType = t
			}
		}
	}
	slices.SortFunc(rep.Lost, func(x, y LostLead) int {
		return cmp.Or(cmp.Compare(y.StuckFor, x.StuckFor), strings.Compare(x.LeadID, y.LeadID))
	})
	rep.TotalLost = len(rep.Lost)
	if c := q.After; c != nil {
		// The leads up to the cursor, in the same order, were listed: the
		// page starts at the first after it (the cursor's own lead, equal,
		// counts as before).
		i, _ := slices.BinarySearchFunc(rep.Lost, *c, func(l LostLead, c LostCursor) int {
			return cmp.Or(cmp.Compare(c.StuckFor, l.StuckFor), strings.Compare(l.LeadID, c.LeadID), -1)
		})
		rep.Lost = rep.Lost[i:]
	}
	if len(rep.Lost) > q.Limit {
		rep.Lost = rep.Lost[:q.Limit]
	}
	slices.SortFunc(rep.OrphanClaims, func(x, y OrphanClaim) int { return strings.Compare(x.Subject, y.Subject) })
	rep.Took = time.Since(start)
	return rep, nil
}

// judge says whether h breaks the invariant, and how. It runs for every
// lead, so it decides before it builds anything.
func judge(h *Head, floors []uint64, parked map[string]bool, stopped map[lifecycle.Owner]string, q LostQuery) (LostLead, bool) {
	st := &h.State
	if st.Status.Terminal() {
		return LostLead{}, false
	}
	lost := func(r LostReason, detail string, stuck time.Duration) (LostLead, bool) {
		return LostLead{Head: *h, Reason: r, MissingStep: nextStep(h), Detail: detail, StuckFor: stuck}, true
	}
	if st.Status == lifecycle.StatusNone {
		// Every lead event carries its lifecycle: a writer's bug.
		return lost(LostUnknownStatus, "its last event carries no lifecycle status", q.AsOf.Sub(h.At))
	}
	if err := lifecycle.Check(*st); err != nil {
		switch {
		case st.Status > lifecycle.StatusErased:
			return lost(LostUnknownStatus, err.Error(), q.AsOf.Sub(h.At))
		case st.Owner.IsZero():
			return lost(LostNoOwner, err.Error(), q.AsOf.Sub(h.At))
		}
		return lost(LostNoDeadline, err.Error(), q.AsOf.Sub(h.At))
	}
	waitsForNurture := h.RecycleDue || (st.Owner == lifecycle.QueueNurture && (st.Status == lifecycle.StatusLost || st.Status == lifecycle.StatusRecycled))
	if waitsForNurture {
		if p := eventstore.Partition(h.LeadID); p < len(floors) && h.Seq <= floors[p] && !parked[h.LeadID] {
			return lost(LostDropped, fmt.Sprintf("consumer group %q handled %s (seq %d) and wrote no next step", Group, h.Type, h.Seq), q.AsOf.Sub(h.At))
		}
	}
	// A new lead scored already waits for engagement or its deadline,
	// not for the stopped scorer: its deadline is judged below.
	if group, ok := stopped[waitingIn(h)]; ok && !(st.Status == lifecycle.StatusNew && h.Scored) {
		return lost(LostStalled, fmt.Sprintf("consumer group %q has no live member: start %s", group, group), q.AsOf.Sub(h.At))
	}
	if late := q.AsOf.Sub(st.Deadline); late > q.OverdueGrace && late > 0 {
		return lost(LostOverdue, fmt.Sprintf("due %s, owned by %s", st.Deadline.UTC().Format(time.RFC3339), st.Owner), late)
	}
	return LostLead{}, false
}

// queueGroups maps the queues a lead waits in to the consumer group that
// takes it out of them.
var queueGroups = map[lifecycle.Owner]string{
	lifecycle.QueueQualification: "qualification",
	lifecycle.QueueRouting:       "handoff",
}

// waitingIn is the queue whose group takes the lead out of where it waits:
// an MQL in a named fallback queue waits for handoff's routing retries,
// as one in the routing queue does.
func waitingIn(h *Head) lifecycle.Owner {
	switch st := h.State; {
	case st.Status == lifecycle.StatusMQL && st.Owner.Kind == lifecycle.OwnerQueue:
		return lifecycle.QueueRouting
	case h.Reengaged != "":
		// Its program owns it, but the scorer's re-score decides next.
		return lifecycle.QueueQualification
	default:
		return st.Owner
	}
}

// parkedStep says what a lead parked by group misses: for a group that
// carries no step of the journey (the projector's, a re-score, intake's
// timers) what that group does, else the lead's next step.
func parkedStep(group string, h *Head) string {
	switch {
	case strings.HasPrefix(group, "projector"):
		return "its events in the read model (reports and search), after the dead one; the journey itself goes on"
	case strings.HasPrefix(group, "rescore-"):
		return "its score under the newly active model (that re-score cannot finish while the dead letter stays); the journey itself goes on"
	case group == intakeTimerGroup:
		return "intake's finishing of its erasure or unmerge (releasing or giving back identities); the journey itself goes on"
	}
	return nextStep(h)
}

// intakeTimerGroup is intake's group of fired timers (services never
// import each other; pkg/natsauth names it too).
const intakeTimerGroup = "intake-timers"

// nextStep says, for people, what should happen next to a lead in h.
func nextStep(h *Head) string {
	if h.RecycleDue {
		return "recycle to nurture (contact attempts exhausted)"
	}
	last := lifecycle.Kind(h.Type)
	if h.Breached {
		last = lifecycle.KindSLABreached
	}
	return lifecycle.NextStep(h.State, last)
}
