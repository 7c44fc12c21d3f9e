package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// A rep's capacity counts the leads reserved for the rep: routing reserves
// a lead before it writes the assignment, so two replicas routing at once
// cannot both take a rep's last slot. A reservation ends when the lead
// leaves the rep (the lead consumer releases it), or, should that be
// missed (a crash, a decision that changed), when a full rep's
// reservations are checked against the leads' states (prune).

// reservationGrace keeps a reservation whose lead the rep does not own
// yet: its assignment may still be on its way.
const reservationGrace = time.Minute

// pruneEvery bounds how often one rep's reservations are checked.
const pruneEvery = 2 * time.Second

// reserved is the outcome of reserving a rep's capacity for a lead.
type reserved struct {
	ok   bool
	open int // the rep's open leads (this one included when ok)
	// at is the reservation's time now, prev its time before (zero: the
	// lead had none): a holder's token, see unreserve.
	at, prev time.Time
}

// reserve counts leadID against repID's capacity; not ok, with the rep's
// open leads, when the rep is full. A lead the rep holds already is
// reserved again with a later time, so whoever reserved it before can
// tell that someone else now counts on it too (unreserve).
func (a *App) reserve(ctx context.Context, repID string, capacity int, leadID string) (reserved, error) {
	for attempt := range maxRaces {
		res, rev, err := a.loads.Get(ctx, repID, attempt > 0)
		if err != nil {
			return reserved{}, err
		}
		prev, had := res[leadID]
		if !had && len(res) >= capacity {
			kept, err := a.prune(ctx, repID, res)
			if err != nil {
				return reserved{}, err
			}
			if len(kept) >= capacity {
				if len(kept) < len(res) {
					_ = a.loads.Put(ctx, repID, kept, rev) // tidy; a lost race is fine
				}
				return reserved{open: len(kept)}, nil
			}
			res = kept
		}
		next := maps.Clone(res)
		if next == nil {
			next = Reservations{}
		}
		at := time.UnixMilli(a.now().UnixMilli()) // as stored
		if had && !at.After(prev) {
			at = prev.Add(time.Millisecond)
		}
		next[leadID] = at
		err = a.loads.Put(ctx, repID, next, rev)
		if errors.Is(err, ErrStale) {
			continue
		}
		if err != nil {
			return reserved{}, err
		}
		return reserved{ok: true, open: len(next), at: at, prev: prev}, nil
	}
	return reserved{}, fmt.Errorf("reserve %s for %s: %w", leadID, repID, eventstore.ErrConflict)
}

// unreserve ends leadID's reservation with repID if it is still the one
// made at at (zero: whenever made): a later time is someone else's, who
// may be assigning the lead to the rep.
func (a *App) unreserve(ctx context.Context, repID, leadID string, at time.Time) error {
	return a.unreserveUnless(ctx, repID, leadID, func(got time.Time) (bool, error) { return !at.IsZero() && !got.Equal(at), nil })
}

// unreserveUnless deletes leadID's reservation with repID unless keep,
// asked of its time, says to keep it; the delete is conditional on the
// reservations keep was asked about.
func (a *App) unreserveUnless(ctx context.Context, repID, leadID string, keep func(at time.Time) (bool, error)) error {
	for attempt := range maxRaces {
		res, rev, err := a.loads.Get(ctx, repID, attempt > 0)
		if err != nil {
			return err
		}
		got, ok := res[leadID]
		if !ok {
			return nil
		}
		if k, err := keep(got); k || err != nil {
			return err
		}
		next := maps.Clone(res)
		delete(next, leadID)
		err = a.loads.Put(ctx, repID, next, rev)
		if !errors.Is(err, ErrStale) {
			return err
		}
	}
	return fmt.Errorf("release %s from %s: %w", leadID, repID, eventstore.ErrConflict)
}

// release ends leadID's reservation with repID, if it has one.
func (a *App) release(ctx context.Context, repID, leadID string) error {
	return a.unreserve(ctx, repID, leadID, time.Time{})
}

// releaseLeft ends leadID's reservation with repID, whom an event took
// the lead from, unless the lead is the rep's open lead again: a lead
// consumer behind the lead's events would otherwise delete the
// reservation a later command made when the lead came back to the rep,
// and the rep's capacity would never count the lead again. The lead's
// state now decides, not the reservation's time against the event's:
// different replicas' clocks stamp the two, and one running behind would
// date a later reservation before the event. The reservations are read
// first and written back only at their revision: one made after that is
// never deleted.
func (a *App) releaseLeft(ctx context.Context, repID, leadID string) error {
	return a.unreserveUnless(ctx, repID, leadID, func(time.Time) (bool, error) {
		// A full read: it asks the stream's leader for the lead's last
		// event, which a replica behind could miss.
		l, err := a.load(ctx, leadID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, err
		}
		return l != nil && openWith(l.state, repID), nil
	})
}

// prune keeps the reservations whose leads the rep holds open (ASSIGNED
// or ACCEPTED), and those too young to tell.
func (a *App) prune(ctx context.Context, repID string, res Reservations) (Reservations, error) {
	ids := make([]string, 0, len(res))
	for id := range res {
		ids = append(ids, id)
	}
	states, err := a.leads.States(ctx, ids...)
	if err != nil {
		return nil, err
	}
	kept := Reservations{}
	now := a.now()
	for id, at := range res {
		st, ok := states[id]
		if (ok && openWith(st, repID)) || now.Sub(at) < reservationGrace {
			kept[id] = at
		}
	}
	return kept, nil
}

// openWith reports whether a lead in state st is an open lead of repID's,
// one its capacity counts.
func openWith(st lifecycle.State, repID string) bool {
	return st.Owner == lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: repID} &&
		(st.Status == lifecycle.StatusAssigned || st.Status == lifecycle.StatusAccepted)
}

// refreshFull prunes the reps a decision found at capacity (each at most
// every pruneEvery) and reports whether that freed any.
func (a *App) refreshFull(ctx context.Context, cfg *routing.Config, d routing.Decision) (bool, error) {
	freed := false
	for _, c := range d.Record.GetCandidates() {
		if c.GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_AT_CAPACITY {
			continue
		}
		rep := c.GetRepId()
		now := a.now()
		if last, ok := a.pruned.Load(rep); ok && now.Sub(last.(time.Time)) < pruneEvery {
			continue
		}
		a.pruned.Store(rep, now)
		res, rev, err := a.loads.Get(ctx, rep, true)
		if err != nil {
			return false, err
		}
		kept, err := a.prune(ctx, rep, res)
		if err != nil {
			return false, err
		}
		if len(kept) < len(res) {
			if err := a.loads.Put(ctx, rep, kept, rev); err != nil && !errors.Is(err, ErrStale) {
				return false, err
			}
		}
		if len(kept) < int(cfg.Reps[rep].GetCapacity()) {
			freed = true
		}
	}
	return freed, nil
}

func (a *App) loadCounts(override map[string]int) routing.Loads {
	return func(rep string) int { return max(a.loads.Count(rep), override[rep]) }
}

// poolEntry is a pool's pointer as this process last saw it, and the
// decisions of this process waiting for the pool's turn. One of them at
// a time leads: it takes the turns of all that wait, in order, in one
// append (group commit), so a pool's turns cost one round trip per
// batch, not one per lead, and this process's workers never race each
// other for the pointer. mu guards the pointer only, so reading it never
// waits for a turn being written.
type poolEntry struct {
	mu    sync.Mutex
	state routing.PoolState
	ok    bool

	qmu     sync.Mutex
	waiting []*turnReq
	leading bool
}

// turnReq is one decision waiting for its pool's turn.
type turnReq struct {
	leadID, cause string
	version       uint32
	fn            decideFn
	d             *routing.Decision
	pools         map[string]routing.PoolState
	loads         routing.Loads
	appending     func(routing.Decision)
	done          chan turnResult
}

// turnResult ends a turnReq, or (lead) makes its caller the leader.
type turnResult struct {
	moved, lead bool
	err         error
}

func (a *App) poolEntry(id string) *poolEntry {
	a.poolsMu.Lock()
	defer a.poolsMu.Unlock()
	e, ok := a.pools[id]
	if !ok {
		e = &poolEntry{}
		a.pools[id] = e
	}
	return e
}

// poolState returns a pool's pointer, read from the stream when this
// process does not know it yet, or lost a race on it.
func (a *App) poolState(ctx context.Context, id string) (routing.PoolState, error) {
	e := a.poolEntry(id)
	e.mu.Lock()
	st, ok := e.state, e.ok
	e.mu.Unlock()
	if ok {
		return st, nil
	}
	seq, ev, err := a.store.Pool(id).Last(ctx)
	if err != nil {
		return routing.PoolState{}, err
	}
	st = routing.PoolStateOf(seq, ev.GetPoolTurnTaken())
	e.set(st, true)
	return st, nil
}

func (e *poolEntry) set(st routing.PoolState, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !ok || !e.ok || st.Seq >= e.state.Seq {
		e.state, e.ok = st, ok
	}
}

// decidedCache remembers recent decisions by cause, so a retry after a
// lost race on the lead reuses the decision (and its pool turn) instead
// of taking another turn; and the causes a turn was sent for (tried), so
// a retry of one whose decision was not made (the turn's answer lost, its
// reservation failed) looks for that turn as a redelivery does.
type decidedCache struct {
	mu    sync.Mutex
	m     map[string]routing.Decision
	tried map[string]bool
}

func (c *decidedCache) try(cause string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tried == nil || len(c.tried) >= 50_000 {
		c.tried = map[string]bool{}
	}
	c.tried[cause] = true
}

func (c *decidedCache) wasTried(cause string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tried[cause]
}

func (c *decidedCache) get(cause string) (routing.Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.m[cause]
	return d, ok
}

func (c *decidedCache) put(cause string, d routing.Decision) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= 50_000 {
		clear(c.m)
	}
	c.m[cause] = d
}

// decideFn decides on the pools' pointers and the reps' loads.
type decideFn = func(map[string]routing.PoolState, routing.Loads) routing.Decision

// decide carries a routing decision through: it decides with fn, frees
// reps it finds full by mistake, records the pool turn and reserves the
// chosen rep's capacity, deciding again whenever one of those loses a
// race. cause names the decision: the same cause gets the same decision.
// since, if not 0, says an attempt for cause may have been cut short (a
// redelivery): a turn it took after that stream sequence gives the lead
// to its rep, with no second turn, if the rep can still take it.
func (a *App) decide(ctx context.Context, cfg *routing.Config, leadID, cause string, since uint64, fn decideFn) (routing.Decision, error) {
	if d, ok := a.decided.get(cause); ok && d.RepID != "" {
		// Decided before, in this process: a try whose write failed, tried
		// again (perhaps after a long outage). The routing data may have
		// changed meanwhile (the rep away, inactive, out of the pool), and
		// the rep's reservation may have been pruned and the slot taken:
		// count the lead again, or decide afresh if the rep can no longer
		// take it (a queue decision is decided afresh: it took no turn).
		still, err := a.stillChosen(ctx, cfg, d, fn)
		if err != nil {
			return routing.Decision{}, err
		}
		switch {
		case still.RepID != d.RepID, still.Record.GetRuleId() != d.Record.GetRuleId():
			// Not the rep any more, or another way to them (the account
			// gone, the pool's turn now): decided afresh, so a turn is
			// taken if one is due, and the reservation the first try made
			// goes, as the lead may go elsewhere.
			if err := a.unreserve(ctx, d.RepID, leadID, time.Time{}); err != nil {
				return routing.Decision{}, err
			}
		default:
			r := a.reservation(ctx, cfg, still, leadID)
			if r.err != nil {
				return routing.Decision{}, r.err
			}
			if r.ok {
				// As decided now (segment, routing version), on the turn
				// the first try took, if any.
				still.Turn = nil
				a.decided.put(cause, still)
				return still, nil
			}
		}
	}
	override := map[string]int{}
	// reserved is the reservation this decision holds for the lead, kept
	// if its rep is the one the decision returns: any other is released
	// on the way out, if this decision made it (own): one a command made
	// first (AssignLead, ReassignLead) is that command's.
	var reserved holding
	kept := ""
	release := func(h holding) error {
		if h.rep == "" || !h.own {
			return nil
		}
		return a.unreserve(ctx, h.rep, leadID, h.at)
	}
	defer func() {
		if reserved.rep != kept {
			if err := release(reserved); err != nil {
				a.log.WarnContext(ctx, "release a reservation", "rep", reserved.rep, "lead", leadID, "err", err)
			}
		}
	}()
	hold := func(r reservation) error {
		if reserved.rep != "" && reserved.rep != r.rep {
			if err := release(reserved); err != nil {
				return err
			}
		}
		own := r.own || (reserved.rep == r.rep && reserved.own)
		reserved = holding{rep: r.rep, at: r.at, own: own}
		return nil
	}
	if since > 0 {
		d, rep, ok, err := a.resumed(ctx, cfg, leadID, cause, since, fn)
		if err != nil {
			return routing.Decision{}, err
		}
		// The cut-short attempt's reservation, if any (whenever made):
		// released unless kept.
		reserved = holding{rep: rep, own: true}
		if ok {
			r := a.reservation(ctx, cfg, d, leadID)
			if r.err != nil {
				return routing.Decision{}, r.err
			}
			if r.ok {
				kept = rep
				a.decided.put(cause, d)
				return d, nil
			}
			override[rep] = r.open // full since: routed afresh
		}
	}
	for attempt := range maxRaces {
		pools, err := a.poolStates(ctx, cfg)
		if err != nil {
			return routing.Decision{}, err
		}
		loads := a.loadCounts(override)
		d := fn(pools, loads)
		if attempt < 2 {
			freed, err := a.refreshFull(ctx, cfg, d)
			if err != nil {
				return routing.Decision{}, err
			}
			if freed {
				continue
			}
		}
		if d.RepID == "" {
			a.decided.put(cause, d)
			return d, nil
		}
		var r reservation
		if d.Turn != nil {
			// The reservation goes out with the turn, not after it: each is
			// a round trip, and the pool's lock need cover only the turn's.
			// If the turn is lost or the decision changes, the reservation
			// is given back (hold, or the deferred release).
			var pending chan reservation
			moved, err := a.takeTurn(ctx, cfg, leadID, cause, fn, &d, pools, loads, func(d routing.Decision) {
				pending = make(chan reservation, 1)
				go func() { pending <- a.reservation(ctx, cfg, d, leadID) }()
			})
			if pending != nil {
				r = <-pending
				if r.err == nil && r.ok {
					if herr := hold(r); herr != nil && err == nil {
						err = herr
					}
				}
			}
			if err != nil {
				return routing.Decision{}, err
			}
			if moved {
				continue
			}
		} else {
			r = a.reservation(ctx, cfg, d, leadID)
			if r.err == nil && r.ok {
				if err := hold(r); err != nil {
					return routing.Decision{}, err
				}
			}
		}
		// A rep found full here (another replica took the last slot a
		// moment ago) costs the turn: the next decision skips the rep.
		if r.err != nil {
			return routing.Decision{}, r.err
		}
		if !r.ok {
			override[d.RepID] = r.open
			continue
		}
		kept = d.RepID
		a.decided.put(cause, d)
		if d.Turn != nil {
			a.passed(AfterTurn, leadID)
		}
		return d, nil
	}
	return routing.Decision{}, fmt.Errorf("route %s: %w after %d races", leadID, eventstore.ErrConflict, maxRaces)
}

func (a *App) poolStates(ctx context.Context, cfg *routing.Config) (map[string]routing.PoolState, error) {
	pools := make(map[string]routing.PoolState, len(cfg.Pools))
	for id := range cfg.Pools {
		st, err := a.poolState(ctx, id)
		if err != nil {
			return nil, err
		}
		pools[id] = st
	}
	return pools, nil
}

// resumed looks for a turn of the decision's pool that an attempt for
// cause took after stream sequence since and did not live to use; rep is
// that turn's rep ("" for none). ok: the rep can still take the lead,
// and d gives it to the rep without a turn; else it is routed afresh.
func (a *App) resumed(ctx context.Context, cfg *routing.Config, leadID, cause string, since uint64, fn decideFn) (d routing.Decision, rep string, ok bool, err error) {
	pools, err := a.poolStates(ctx, cfg)
	if err != nil {
		return d, "", false, err
	}
	pid := fn(pools, a.loadCounts(nil)).Record.GetPoolId()
	pool, found := cfg.Pools[pid]
	if !found {
		return d, "", false, nil
	}
	t, err := a.turnFor(ctx, pid, leadID, cause, since)
	if t == nil || err != nil {
		return d, "", false, err
	}
	rep = t.GetRepId()
	if d = a.decideWith(pools, pool, rep, fn); d.RepID != rep {
		return routing.Decision{}, rep, false, nil
	}
	d.Turn = nil // taken already
	d.Record.Summary += " (the turn an earlier try took)"
	return d, rep, true, nil
}

// stillChosen decides again for d, a decision that gave the lead to a
// rep (by its pool's turn, or as an account's owner), with that rep next
// in the pool's turn: whatever keeps the lead from the rep now (out of
// office, off shift, inactive, out of the pool, another rule, the account
// gone) still does, and the decision it returns names another rep or
// none. Its capacity is the reservation's to check.
func (a *App) stillChosen(ctx context.Context, cfg *routing.Config, d routing.Decision, fn decideFn) (routing.Decision, error) {
	pools, err := a.poolStates(ctx, cfg)
	if err != nil {
		return routing.Decision{}, err
	}
	pool := cfg.Pools[d.Record.GetPoolId()]
	if d.Record.GetRuleId() == routing.RuleAccount {
		pool = nil // the owner took no turn: the pool's is not theirs
	}
	return a.decideWith(pools, pool, d.RepID, fn), nil
}

// decideWith decides with fn on pools, pool's pointer (if any) set so
// that rep is next in turn, and rep's load left out.
func (a *App) decideWith(pools map[string]routing.PoolState, pool *eventv1.Pool, rep string, fn decideFn) routing.Decision {
	if pool != nil {
		pass := make(map[string]uint64, len(pool.GetMembers()))
		for _, m := range pool.GetMembers() {
			pass[m.GetRepId()] = math.MaxUint64
		}
		st := pools[pool.GetPoolId()]
		pass[rep] = st.Clock
		pools[pool.GetPoolId()] = routing.PoolState{Seq: st.Seq, Clock: st.Clock, Pass: pass, Last: st.Last}
	}
	return fn(pools, func(r string) int {
		if r == rep {
			return 0
		}
		return a.loads.Count(r)
	})
}

// turnFor is the latest turn of pool pid taken for leadID by cause after
// stream sequence since; nil if none.
func (a *App) turnFor(ctx context.Context, pid, leadID, cause string, since uint64) (*eventv1.PoolTurnTaken, error) {
	recs, err := a.store.Pool(pid).LoadAfter(ctx, since)
	if err != nil {
		return nil, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		last := recs[i].Event.GetPoolTurnTaken()
		turns := append(slices.Clone(last.GetBefore()), last) // oldest first
		for j := len(turns) - 1; j >= 0; j-- {
			if t := turns[j]; t.GetCauseId() == cause && t.GetLeadId() == leadID {
				return t, nil
			}
		}
	}
	return nil, nil
}

// reservation is the outcome of reserving a decision's rep for a lead.
type reservation struct {
	rep  string
	ok   bool
	open int
	err  error
	// at is its time; own: the lead had none with the rep before.
	at  time.Time
	own bool
}

// holding is a reservation a decision holds: at zero, whenever made.
type holding struct {
	rep string
	at  time.Time
	own bool
}

func (a *App) reservation(ctx context.Context, cfg *routing.Config, d routing.Decision, leadID string) reservation {
	r, err := a.reserve(ctx, d.RepID, int(cfg.Reps[d.RepID].GetCapacity()), leadID)
	return reservation{rep: d.RepID, ok: r.ok, open: r.open, err: err, at: r.at, own: r.prev.IsZero()}
}

// takeTurn decides again on the pool's pointer as it is when the turn is
// taken, and records the turn (PoolTurnTaken at the pointer's version),
// calling appending with the decision as the turn goes out. The turns of
// decisions waiting together go out in one append. moved: the decision
// changed or another replica took a turn; decide again.
func (a *App) takeTurn(ctx context.Context, cfg *routing.Config, leadID, cause string, fn decideFn,
	d *routing.Decision, pools map[string]routing.PoolState, loads routing.Loads, appending func(routing.Decision)) (bool, error) {
	pid := d.Turn.PoolID
	e := a.poolEntry(pid)
	r := &turnReq{leadID: leadID, cause: cause, version: cfg.Version, fn: fn, d: d, pools: pools, loads: loads, appending: appending,
		done: make(chan turnResult, 1)}
	e.qmu.Lock()
	e.waiting = append(e.waiting, r)
	if !e.leading {
		e.leading = true
		r.done <- turnResult{lead: true}
	}
	e.qmu.Unlock()
	for {
		res := <-r.done
		if !res.lead {
			return res.moved, res.err
		}
		e.qmu.Lock()
		batch := e.waiting
		e.waiting = nil
		e.qmu.Unlock()
		a.takeTurns(ctx, pid, e, batch)
		// Hand the lead to the first decision that came in meanwhile.
		e.qmu.Lock()
		if len(e.waiting) > 0 {
			e.waiting[0].done <- turnResult{lead: true}
		} else {
			e.leading = false
		}
		e.qmu.Unlock()
	}
}

// takeTurns decides batch in order, each on the pointer the turns before
// it moved and counting the reps they chose as taken, and records every
// turn in one append: the last, carrying the earlier ones. Each request
// gets its outcome on done.
func (a *App) takeTurns(ctx context.Context, pid string, e *poolEntry, batch []*turnReq) {
	finish := func(rs []*turnReq, res turnResult) {
		for _, r := range rs {
			r.done <- res
		}
	}
	st, err := a.poolState(ctx, pid)
	if err != nil {
		finish(batch, turnResult{err: err})
		return
	}
	var (
		taken []*turnReq
		turns []*eventv1.PoolTurnTaken
		next  = st
		extra = map[string]int{}
	)
	for _, r := range batch {
		r.pools[pid] = next
		loads := r.loads
		*r.d = r.fn(r.pools, func(rep string) int { return loads(rep) + extra[rep] })
		if r.d.Turn == nil || r.d.Turn.PoolID != pid {
			finish([]*turnReq{r}, turnResult{moved: true})
			continue
		}
		turn := r.d.Turn.Event(r.leadID, r.cause, r.version)
		next = routing.PoolStateOf(st.Seq, turn)
		extra[r.d.RepID]++
		taken, turns = append(taken, r), append(turns, turn)
	}
	if len(taken) == 0 {
		return
	}
	last := turns[len(turns)-1]
	for _, t := range turns[:len(turns)-1] {
		t.Passes = nil
		last.Before = append(last.Before, t)
	}
	ev, err := envelope.NewEvent("", last, envelope.Meta{Actor: Actor, CausationID: last.GetCauseId(), CorrelationID: last.GetCauseId()}, a.now())
	if err != nil {
		finish(taken, turnResult{err: err})
		return
	}
	for _, r := range taken {
		a.decided.try(r.cause)
		r.appending(*r.d)
	}
	seq, err := a.store.Pool(pid).Append(ctx, st.Seq, ev)
	switch {
	case errors.Is(err, eventstore.ErrConflict):
		e.set(routing.PoolState{}, false) // another replica took a turn: read the pointer again
		finish(taken, turnResult{moved: true})
	case err != nil:
		finish(taken, turnResult{err: err})
	default:
		e.set(routing.PoolStateOf(seq, last), true)
		finish(taken, turnResult{})
	}
}
