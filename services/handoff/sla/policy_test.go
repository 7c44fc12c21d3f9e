package sla_test

import (
	"testing"
	"time"

	"github.com/leadflow/leadflow/services/handoff/sla"
)

// The attempts window never closes while the first contact is still due:
// 72 working hours are nine 8-hour days, longer than five working days
// of attempts, so both end together, and warn together.
func TestContactAttemptsNotBeforeFirstContact(t *testing.T) {
	c := berlin(t)
	start := at(t, "2026-03-09 09:00") // a Monday
	for _, tc := range []struct {
		name              string
		within            time.Duration
		days              int
		attempts, warnAtt string
	}{
		{"first contact longer", 72 * time.Hour, 5, "2026-03-19 17:00", "2026-03-19 16:00"},
		{"attempts longer", 4 * time.Hour, 5, "2026-03-16 09:00", "2026-03-13 16:00"},
	} {
		p := sla.Policy{AcceptWithin: 2 * time.Hour, FirstContactWithin: tc.within, MinAttempts: 3, AttemptDays: tc.days, WarnBefore: time.Hour}
		d := p.Contact(c, start)
		if d.AttemptsDue.Before(d.ContactDue) {
			t.Errorf("%s: attempts due %s, before the first contact (%s)", tc.name, d.AttemptsDue.In(c.Location()), d.ContactDue.In(c.Location()))
		}
		if !d.AttemptsDue.Equal(at(t, tc.attempts)) || !d.AttemptsWarn.Equal(at(t, tc.warnAtt)) {
			t.Errorf("%s: attempts due %s, warned %s; want %s and %s", tc.name, d.AttemptsDue.In(c.Location()), d.AttemptsWarn.In(c.Location()),
				tc.attempts, tc.warnAtt)
		}
	}
}
