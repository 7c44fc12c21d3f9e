package program

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Entry is one program in the catalog.
type Entry struct {
	Program *eventv1.NurtureProgram
	// BuiltIn is true for a built-in program nobody has replaced.
	BuiltIn   bool
	ChangedAt time.Time
	ChangedBy *eventv1.Actor
	// Seq is the stream sequence of its last change, 0 for a built-in.
	Seq uint64
}

// Catalog is every program: the built-ins, replaced or joined by the
// programs defined through the API. It is the fold of the
// NurtureProgramChanged events; never change one that others may read,
// Clone it.
type Catalog struct {
	// Version counts the changes applied.
	Version uint32
	// Seq is the stream sequence of the last change applied: the
	// subject's version, to append the next change at.
	Seq     uint64
	entries map[string]Entry
	// earlier are the entries each change replaced, oldest first: an
	// activity is judged by the rules in force when it came (At).
	earlier map[string][]Entry
	// shortest is the shortest program it accepts and runs.
	shortest time.Duration
}

// New returns the catalog before any change: the built-ins.
func New() *Catalog {
	c := &Catalog{entries: map[string]Entry{}, earlier: map[string][]Entry{}, shortest: MinDuration}
	for _, p := range BuiltIns() {
		c.entries[p.GetProgramId()] = Entry{Program: p, BuiltIn: true}
	}
	return c
}

// Clone returns a copy that can be changed on its own.
func (c *Catalog) Clone() *Catalog {
	n := *c
	n.entries = maps.Clone(c.entries)
	n.earlier = maps.Clone(c.earlier) // appended to only through a clipped copy (Apply)
	return &n
}

// WithShortest returns a copy that accepts and runs programs as short as
// d instead of MinDuration: tests watch programs end in seconds.
func (c *Catalog) WithShortest(d time.Duration) *Catalog {
	n := c.Clone()
	n.shortest = d
	return n
}

// Duration is how long a lead stays in p: its duration, but at least the
// shortest the catalog accepts, should p be stored from when shorter
// programs were accepted.
func (c *Catalog) Duration(p *eventv1.NurtureProgram) time.Duration {
	return max(Duration(p), c.shortest)
}

// Apply folds one recorded change, stored at stream sequence seq.
func (c *Catalog) Apply(seq uint64, at time.Time, ch *eventv1.NurtureProgramChanged) {
	if seq <= c.Seq || ch.GetProgram() == nil {
		return
	}
	c.Seq = seq
	c.Version = max(c.Version+1, ch.GetVersion())
	id := ch.GetProgram().GetProgramId()
	if old, ok := c.entries[id]; ok {
		c.earlier[id] = append(slices.Clip(c.earlier[id]), old)
	}
	c.entries[id] = Entry{Program: ch.GetProgram(), ChangedAt: at, ChangedBy: ch.GetChangedBy(), Seq: seq}
}

// At returns program id as it was for an event stored at stream sequence
// seq: the last change stored before it, else (a program made since) as
// it is now.
func (c *Catalog) At(id string, seq uint64) (Entry, bool) {
	e, ok := c.entries[id]
	if !ok || e.Seq < seq {
		return e, ok
	}
	for _, old := range slices.Backward(c.earlier[id]) {
		if old.Seq < seq {
			return old, true
		}
	}
	return e, true
}

// Get returns a program, retired or not.
func (c *Catalog) Get(id string) (Entry, bool) {
	e, ok := c.entries[id]
	return e, ok
}

// List returns the programs by id, retired ones only if asked.
func (c *Catalog) List(includeRetired bool) []Entry {
	ids := slices.Sorted(maps.Keys(c.entries))
	out := make([]Entry, 0, len(ids))
	for _, id := range ids {
		if e := c.entries[id]; includeRetired || !e.Program.GetRetired() {
			out = append(out, e)
		}
	}
	return out
}

// ErrUnknown is returned for a program id the catalog does not hold.
var ErrUnknown = errors.New("unknown program")

// RefusedError is a change the catalog's state does not allow.
type RefusedError struct {
	ProgramID string
	Reason    string
}

func (e *RefusedError) Error() string { return "program " + e.ProgramID + ": " + e.Reason }

// ValidationError lists what is wrong with a program; fields are named
// within the program ("entry_rules[1].score_band").
type ValidationError struct{ Violations []Violation }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = strings.TrimPrefix(v.Field+" "+v.Description, " ")
	}
	return "invalid program: " + strings.Join(parts, "; ")
}

// Put returns the change that records p as the program with its id: a
// new program, or the next revision of an existing one (a retired one is
// active again). unchanged is true, and the change nil, when the program
// is already exactly so.
//
// Errors: *ValidationError (p itself, an entry rule overlapping a rule of
// another active program, an unknown or retired then_program_id).
func (c *Catalog) Put(p *eventv1.NurtureProgram, by *eventv1.Actor) (ch *eventv1.NurtureProgramChanged, unchanged bool, err error) {
	v := violations(validate(p, c.shortest))
	if len(v) == 0 {
		c.checkAgainst(&v, p)
	}
	if len(v) > 0 {
		return nil, false, &ValidationError{Violations: v}
	}
	old, exists := c.entries[p.GetProgramId()]
	if exists && !old.Program.GetRetired() && same(old.Program, p) {
		return nil, true, nil
	}
	next := proto.CloneOf(p)
	next.Revision = old.Program.GetRevision() + 1
	kind := eventv1.NurtureProgramChange_NURTURE_PROGRAM_CHANGE_UPDATED
	if !exists || old.BuiltIn {
		kind = eventv1.NurtureProgramChange_NURTURE_PROGRAM_CHANGE_DEFINED
	}
	return &eventv1.NurtureProgramChanged{Version: c.Version + 1, Program: next, Change: kind, ChangedBy: by}, false, nil
}

// checkAgainst checks p against the other programs.
func (c *Catalog) checkAgainst(v *violations, p *eventv1.NurtureProgram) {
	for i, r := range p.GetEntryRules() {
		for _, e := range c.List(false) {
			if e.Program.GetProgramId() == p.GetProgramId() {
				continue
			}
			for _, other := range e.Program.GetEntryRules() {
				if what, ok := overlap(other, r); ok {
					v.add(fmt.Sprintf("entry_rules[%d]", i), "overlaps rule %q of program %q: %s", other.GetRuleId(), e.Program.GetProgramId(), what)
				}
			}
		}
	}
	if id := p.GetExitRules().GetThenProgramId(); id != "" && id != p.GetProgramId() {
		switch e, ok := c.entries[id]; {
		case !ok:
			v.add("exit_rules.then_program_id", "%q is an unknown program", id)
		case e.Program.GetRetired():
			v.add("exit_rules.then_program_id", "program %q is retired", id)
		}
	}
}

// Retire returns the change that retires a program. unchanged is true,
// and the change nil, for a program retired already.
//
// Errors: ErrUnknown; *RefusedError for a built-in program (the recycle
// policy falls back to it) or one that another active program's exit
// rules send leads to.
func (c *Catalog) Retire(id string, by *eventv1.Actor) (ch *eventv1.NurtureProgramChanged, unchanged bool, err error) {
	e, ok := c.entries[id]
	if !ok {
		return nil, false, fmt.Errorf("%w %q", ErrUnknown, id)
	}
	if e.Program.GetRetired() {
		return nil, true, nil
	}
	if slices.ContainsFunc(BuiltIns(), func(b *eventv1.NurtureProgram) bool { return b.GetProgramId() == id }) {
		return nil, false, &RefusedError{ProgramID: id, Reason: "is where the recycle policy sends leads no entry rule takes; change it with PutProgram instead of retiring it"}
	}
	for _, other := range c.List(false) {
		if other.Program.GetProgramId() != id && other.Program.GetExitRules().GetThenProgramId() == id {
			return nil, false, &RefusedError{ProgramID: id, Reason: fmt.Sprintf("program %q sends its leads here when it ends (exit_rules.then_program_id); change that first", other.Program.GetProgramId())}
		}
	}
	next := proto.CloneOf(e.Program)
	next.Revision++
	next.Retired = true
	return &eventv1.NurtureProgramChanged{Version: c.Version + 1, Program: next,
		Change: eventv1.NurtureProgramChange_NURTURE_PROGRAM_CHANGE_RETIRED, ChangedBy: by}, false, nil
}

// Choice is the program chosen for a recycled lead, and why.
type Choice struct {
	Program *eventv1.NurtureProgram
	// RuleID is the entry rule that matched; empty for a fallback.
	RuleID string
	Why    string
}

// Choose picks the program for a lead with key k: the active program
// whose entry rule matches (no two can, see Put), else the recycle
// policy's fallback: the own program of a rejection with its own policy
// (OwnPolicy: bad data, not a fit, existing customer, duplicate), Default
// for the rest.
func (c *Catalog) Choose(k Key) Choice {
	for _, e := range c.List(false) {
		for _, r := range e.Program.GetEntryRules() {
			if Matches(r, k) {
				return Choice{Program: e.Program, RuleID: r.GetRuleId(),
					Why: fmt.Sprintf("entry rule %q of program %q matched %s", r.GetRuleId(), e.Program.GetProgramId(), k)}
			}
		}
	}
	id := Default
	if own, ok := ownPrograms[k.RejectReason]; ok && k.Cause == eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED {
		id = own
	}
	return Choice{Program: c.entries[id].Program, Why: fmt.Sprintf("no entry rule matched %s: the recycle policy's %q", k, id)}
}

// Active returns a program that takes new leads.
func (c *Catalog) Active(id string) (*eventv1.NurtureProgram, bool) {
	e, ok := c.entries[id]
	if !ok || e.Program.GetRetired() {
		return nil, false
	}
	return e.Program, true
}
