package main

// The sales half of a chaos run: each acknowledged lead is worked as its
// owner would work it, through any live handoff replica, while the
// faults go on, so rejections and lost deals go back to nurture under
// kill -9 too. Every step is retried with its own request id until it
// is answered.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
)

// salesAct is what sales does with a chaos lead once it is assigned.
type salesAct int

const (
	leaveAssigned salesAct = iota
	reject                 // rejected: nurture recycles and enrols it
	accept
	loseDeal // accepted, converted, closed lost: nurture recycles it
)

func (a salesAct) String() string {
	return [...]string{"left assigned", "rejected", "accepted", "lost as a deal"}[a]
}

// salesActOf spreads the four acts over the captures.
func salesActOf(i int) salesAct { return salesAct(i % 4) }

// ackedLead is a capture's answer: its index and lead.
type ackedLead struct {
	i  int
	id string
}

// salesReport is what the sales side did: each lead's act, once all its
// steps were answered, and the leads it could not work, with why.
type salesReport struct {
	done    map[string]salesAct
	failed  []string
	gaveUp  map[string]bool // the leads of failed
	retries int
}

// chaosSales works every lead it is handed, once routed, until giveUp.
func chaosSales(ctx context.Context, f *fleet, routes *routed, acked <-chan ackedLead, giveUp time.Time) salesReport {
	var (
		mu      sync.Mutex
		rep     = salesReport{done: map[string]salesAct{}, gaveUp: map[string]bool{}}
		retries atomic.Int64
		wg      sync.WaitGroup
	)
	for l := range acked {
		if belowThreshold(l.i) {
			continue // never an MQL: nurture's
		}
		act := salesActOf(l.i)
		if act == leaveAssigned {
			mu.Lock()
			rep.done[l.id] = act
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			err := workLead(ctx, f, routes, l, act, giveUp, &retries)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, errQueued) {
				rep.done[l.id] = leaveAssigned // nobody to act: checked as left alone
				return
			}
			if err != nil {
				rep.failed = append(rep.failed, fmt.Sprintf("lead %s (%s): %v", l.id, act, err))
				rep.gaveUp[l.id] = true
				return
			}
			rep.done[l.id] = act
		})
	}
	wg.Wait()
	rep.retries = int(retries.Load())
	return rep
}

// errQueued is a lead routed to a queue, which no rep works.
var errQueued = errors.New("routed to a queue")

// workLead waits until the lead is assigned to a rep, then takes its
// act's steps as that rep.
func workLead(ctx context.Context, f *fleet, routes *routed, l ackedLead, act salesAct, giveUp time.Time, retries *atomic.Int64) error {
	owner, err := routes.rep(ctx, l.id, giveUp)
	if err != nil {
		return err
	}
	if owner == "" {
		return errQueued
	}
	type step struct {
		name string
		call func(context.Context, handoffv1.HandoffServiceClient, string) error
	}
	var steps []step
	acceptStep := step{"accept", func(ctx context.Context, c handoffv1.HandoffServiceClient, rid string) error {
		_, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: l.id, RepId: owner, RequestId: rid})
		return err
	}}
	switch act {
	case reject:
		reason := eventv1.RejectReason_REJECT_REASON_NOT_READY
		if l.i%8 == 1 {
			reason = eventv1.RejectReason_REJECT_REASON_BAD_DATA
		}
		steps = []step{{"reject", func(ctx context.Context, c handoffv1.HandoffServiceClient, rid string) error {
			_, err := c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: l.id, RepId: owner, RequestId: rid, Reason: reason})
			return err
		}}}
	case accept:
		steps = []step{acceptStep}
	case loseDeal:
		steps = []step{acceptStep, {"convert", func(ctx context.Context, c handoffv1.HandoffServiceClient, rid string) error {
			_, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: l.id, RepId: owner, RequestId: rid,
				Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 2_500_000}, Stage: "discovery"})
			return err
		}}, {"close lost", func(ctx context.Context, c handoffv1.HandoffServiceClient, rid string) error {
			_, err := c.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: l.id, RepId: owner, RequestId: rid, Reason: "no budget"})
			return err
		}}}
	}
	for _, s := range steps {
		rid := fmt.Sprintf("chaos-%d-%s", l.i, strings.ReplaceAll(s.name, " ", "-"))
		if err := untilAnswered(ctx, giveUp, retries, func(ctx context.Context) error {
			conn, err := f.conn("handoff")
			if err != nil {
				return err
			}
			return s.call(ctx, handoffv1.NewHandoffServiceClient(conn), rid)
		}); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// untilAnswered retries call (the same request) until it succeeds, or
// until giveUp. A refusal that a retry cannot change (a bad request, a
// refused transition) ends it at once: a step the lifecycle refuses is a
// finding, not an outage.
func untilAnswered(ctx context.Context, giveUp time.Time, retries *atomic.Int64, call func(context.Context) error) error {
	var last error
	for try := 0; time.Now().Before(giveUp); try++ {
		if try > 0 {
			retries.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := call(cctx)
		cancel()
		switch status.Code(err) {
		case codes.OK:
			return nil
		case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound, codes.PermissionDenied, codes.AlreadyExists:
			return err
		}
		last = err
	}
	if last == nil {
		return errors.New("not tried before giving up")
	}
	return fmt.Errorf("not answered before giving up: %w", last)
}

// routed is where the lead stream says each lead went, as the run goes:
// its rep, or "" for a queue. It follows the stream with an ordered
// consumer, and hands a routing on only once the stream's leader holds
// it: a consumer on a follower can deliver a write before the leader has
// applied (and acknowledged) it, and the guarantee checked is that every
// command sees every acknowledged write.
type routed struct {
	pl      *pipeline
	mu      sync.Mutex
	to      map[string]assignment
	waiting map[string][]chan assignment
}

// assignment is where a LeadAssigned or LeadQueued sent a lead, and the
// stream sequence it was stored at.
type assignment struct {
	rep     string // "" for a queue
	subject string
	seq     uint64
}

// watchRouting reads every LeadAssigned and LeadQueued appended from now
// until ctx ends. Each is handed on at once; rep, in the lead's own
// goroutine, waits for the leader to hold it, so one slow leader read does
// not hold up every lead after it.
func watchRouting(ctx context.Context, pl *pipeline) (*routed, error) {
	r := &routed{pl: pl, to: map[string]assignment{}, waiting: map[string][]chan assignment{}}
	cons, err := pl.js.OrderedConsumer(ctx, eventstore.DefaultStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{eventstore.LeadSubjects}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		typ := m.Headers().Get(eventstore.HeaderType)
		if typ != "LeadAssigned" && typ != "LeadQueued" {
			return
		}
		ev, err := eventstore.DecodeEvent(m.Data())
		if err != nil {
			return
		}
		md, err := m.Metadata()
		if err != nil {
			return
		}
		a := assignment{subject: m.Subject(), seq: md.Sequence.Stream}
		if owner := ev.GetLifecycle().GetOwner(); owner.GetKind() == eventv1.OwnerKind_OWNER_KIND_REP {
			a.rep = owner.GetId()
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.to[ev.GetLeadId()] = a
		for _, w := range r.waiting[ev.GetLeadId()] {
			w <- a
		}
		delete(r.waiting, ev.GetLeadId())
	})
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, cc.Stop)
	return r, nil
}

// rep waits until the lead is routed and the stream's leader holds the
// routing (a consumer on a follower may deliver it before), and returns
// its rep ("" for a queue).
func (r *routed) rep(ctx context.Context, id string, giveUp time.Time) (string, error) {
	r.mu.Lock()
	a, ok := r.to[id]
	var w chan assignment
	if !ok {
		w = make(chan assignment, 1)
		r.waiting[id] = append(r.waiting[id], w)
	}
	r.mu.Unlock()
	if !ok {
		select {
		case a = <-w:
		case <-time.After(time.Until(giveUp)):
			return "", errors.New("never routed before giving up")
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	for {
		v, err := r.pl.store.Version(ctx, a.subject)
		if err == nil && v >= a.seq {
			return a.rep, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if time.Now().After(giveUp) {
			return "", fmt.Errorf("routed, but the stream's leader did not show it before giving up (%v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkSales checks one lead's events against what sales did with it:
// each step stored once, and every rejection and lost deal recycled and
// enrolled in nurture once, with its review timer scheduled.
func checkSales(id string, act salesAct, worked bool, count map[string]int, last *eventv1.Event, reviews int, report func(string, ...any)) {
	for _, typ := range []string{"LeadAccepted", "LeadRejected", "OpportunityCreated", "DealLost", "LeadRecycled", "NurtureEnrolled"} {
		if count[typ] > 1 {
			report("lead %s: %d × %s", id, count[typ], typ)
		}
	}
	if !worked {
		return
	}
	want := map[salesAct][]string{
		leaveAssigned: nil,
		reject:        {"LeadRejected", "LeadRecycled", "NurtureEnrolled"},
		accept:        {"LeadAccepted"},
		loseDeal:      {"LeadAccepted", "OpportunityCreated", "DealLost", "LeadRecycled", "NurtureEnrolled"},
	}[act]
	for _, typ := range want {
		if count[typ] == 0 {
			report("lead %s (%s): no %s", id, act, typ)
		}
	}
	for _, typ := range []string{"LeadAccepted", "LeadRejected", "DealLost", "LeadRecycled"} {
		if count[typ] > 0 && !slices.Contains(want, typ) {
			report("lead %s (%s): an unexpected %s", id, act, typ)
		}
	}
	status := last.GetLifecycle().GetStatus()
	switch act {
	case reject, loseDeal:
		if status != eventv1.LeadStatus_LEAD_STATUS_NURTURING {
			report("lead %s (%s): ends %s, not in nurture", id, act, status)
		}
		if reviews == 0 {
			report("lead %s (%s): enrolled without its review timer", id, act)
		}
	case accept:
		if status != eventv1.LeadStatus_LEAD_STATUS_ACCEPTED {
			report("lead %s (%s): ends %s", id, act, status)
		}
	}
}

// checkLost asks nurture's own no-lost-lead check, as an operator would
// after an outage: nothing lost, parked or orphaned.
func checkLost(ctx context.Context, f *fleet) ([]string, error) {
	conn, err := f.conn("nurture")
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := nurturev1.NewNurtureServiceClient(conn).FindLostLeads(cctx, &nurturev1.FindLostLeadsRequest{Limit: 20})
	if err != nil {
		return nil, fmt.Errorf("FindLostLeads: %w", err)
	}
	var bad []string
	for _, l := range res.GetLost() {
		bad = append(bad, fmt.Sprintf("FindLostLeads: lead %s %s (%s, owner %s)", l.GetLeadId(), l.GetReason(), l.GetStatus(), l.GetOwner().GetId()))
	}
	if n := res.GetTotalLost(); n > uint64(len(res.GetLost())) {
		bad = append(bad, fmt.Sprintf("FindLostLeads: %d lost leads in all", n))
	}
	for _, p := range res.GetParked() {
		bad = append(bad, fmt.Sprintf("FindLostLeads: lead %s parked in %s behind %s: %s", p.GetLeadId(), p.GetGroup(), p.GetDeadEventType(), p.GetError()))
	}
	for _, c := range res.GetOrphanClaims() {
		bad = append(bad, fmt.Sprintf("FindLostLeads: %s claim %s on lead %s has no events (age %s)", c.GetKind(), c.GetSubject(), c.GetLeadId(), c.GetAge().AsDuration()))
	}
	return bad, nil
}
