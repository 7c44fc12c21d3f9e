// Package sla is the handoff service's clock rules, pure: a team's
// working hours (Calendar), the sales SLA of a segment (Policy), and the
// deadlines of each step, counted in working time.
package sla

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	// The zones' rules inside every binary that counts working hours (used
	// when the system has none for a zone): an image without zoneinfo, or
	// with one older than the zone a team names, would fold that team's
	// calendar to none on every replica but the one that accepted it.
	_ "time/tzdata"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Violation is one refused field.
type Violation struct {
	Field       string
	Description string
}

// span is a working period of one day, in minutes after midnight.
type span struct{ start, end int }

// Calendar is a team's working week in its time zone, less its
// holidays. The zero Calendar works around the clock, in UTC.
type Calendar struct {
	loc  *time.Location
	days [7][]span          // by time.Weekday
	off  map[time.Time]bool // holidays, as dates (see date)
	set  bool               // false: always open
}

// maxHolidays bounds a calendar's holidays: decades of them.
const maxHolidays = 1000

// maxClosed is the most days in a row a calendar may have no working
// time: a closure longer than that is not a holiday, and a calendar that
// never opens would leave every deadline in it undefined.
const maxClosed = 31

// Always is the calendar that is always open.
var Always = Calendar{}

// horizon bounds every walk through a calendar: a deadline more than this
// many days of calendar ahead is a configuration error, not a deadline.
const horizon = 800

// NewCalendar parses working hours; field prefixes each violation's
// field ("team.hours"). Nil or empty hours are Always.
func NewCalendar(field string, h *eventv1.WorkingHours) (Calendar, []Violation) {
	var v []Violation
	add := func(f, format string, args ...any) {
		v = append(v, Violation{Field: field + f, Description: fmt.Sprintf(format, args...)})
	}
	if h == nil || (h.GetTimeZone() == "" && len(h.GetDays()) == 0 && len(h.GetHolidays()) == 0) {
		return Always, nil
	}
	c := Calendar{loc: time.UTC, set: true}
	if tz := h.GetTimeZone(); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil || strings.HasPrefix(tz, "Local") {
			add(".time_zone", "%q is not an IANA time zone", tz)
		} else {
			c.loc = loc
		}
	}
	if len(h.GetDays()) == 0 {
		add(".days", "needs at least one working day")
	}
	for i, d := range h.GetDays() {
		f := fmt.Sprintf(".days[%d]", i)
		if d.GetDay() < eventv1.Weekday_WEEKDAY_MONDAY || d.GetDay() > eventv1.Weekday_WEEKDAY_SUNDAY {
			add(f+".day", "must be a weekday, MONDAY to SUNDAY")
			continue
		}
		start, ok1 := clock(d.GetStart())
		end, ok2 := clock(d.GetEnd())
		if !ok1 {
			add(f+".start", "%q is not a time of day (HH:MM)", d.GetStart())
		}
		if !ok2 {
			add(f+".end", "%q is not a time of day (HH:MM, 24:00 for midnight)", d.GetEnd())
		}
		if !ok1 || !ok2 {
			continue
		}
		if end <= start {
			add(f+".end", "must be after start %s", d.GetStart())
			continue
		}
		wd := time.Weekday(d.GetDay() % 7) // SUNDAY (7) is time.Sunday (0)
		for _, s := range c.days[wd] {
			if start < s.end && s.start < end {
				add(f, "overlaps another period of %s", time.Weekday(wd))
			}
		}
		c.days[wd] = append(c.days[wd], span{start, end})
	}
	for i := range c.days {
		slices.SortFunc(c.days[i], func(a, b span) int { return a.start - b.start })
	}
	if n := len(h.GetHolidays()); n > maxHolidays {
		add(".holidays", "holds %d dates, at most %d", n, maxHolidays)
	}
	for i, s := range h.GetHolidays() {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			add(fmt.Sprintf(".holidays[%d]", i), "%q is not a date (YYYY-MM-DD)", s)
			continue
		}
		if c.off == nil {
			c.off = map[time.Time]bool{}
		}
		c.off[d] = true
	}
	if len(v) == 0 && len(c.off) > 0 {
		if from, n := c.longestClosure(); n > maxClosed {
			add(".holidays", "close the team for %d days in a row from %s; at most %d", n, from.Format(time.DateOnly), maxClosed)
		}
	}
	if len(v) > 0 {
		return Always, v
	}
	return c, nil
}

// longestClosure is the longest run of days without working time that
// holds a holiday, and its first day; runs are counted up to maxClosed+1.
func (c Calendar) longestClosure() (time.Time, int) {
	closed := func(day time.Time) bool { return c.off[day] || len(c.days[day.Weekday()]) == 0 }
	var from time.Time
	most := 0
	for day := range c.off {
		start := day
		for n := 0; n <= maxClosed && closed(prevDay(start)); n++ {
			start = prevDay(start)
		}
		n := 0
		for d := start; closed(d) && n <= maxClosed; d = nextDay(d) {
			n++
		}
		if n > most || (n == most && start.Before(from)) {
			from, most = start, n
		}
	}
	return from, most
}

// clock parses "HH:MM" into minutes after midnight; "24:00" is 1440.
func clock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, false
	}
	return hh*60 + mm, true
}

// Location is the calendar's time zone.
func (c Calendar) Location() *time.Location {
	if c.loc == nil {
		return time.UTC
	}
	return c.loc
}

// Days are walked as civil dates (midnight UTC stands for the date), not
// as local midnights: where DST starts at midnight (Santiago, Asuncion,
// Havana) the local midnight does not exist, and a date (Apia's
// 2011-12-30) may not exist at all.

// date is the calendar date of t in the calendar's zone.
func (c Calendar) date(t time.Time) time.Time {
	y, m, d := t.In(c.Location()).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// at is when the calendar's clock shows time of day tod on day; a time
// the clock skips (a DST gap) is when the clock resumes, and one it shows
// twice (clocks going back) the first time it does.
func (c Calendar) at(day time.Time, tod time.Duration) time.Time {
	want := day.Add(tod)
	t := time.Date(want.Year(), want.Month(), want.Day(), want.Hour(), want.Minute(), want.Second(), want.Nanosecond(), c.Location())
	lt := t.In(c.Location())
	got := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.UTC)
	if got.Equal(want) {
		// time.Date may pick either of two: east of Greenwich it picks
		// the second. The zone before this one, if its clock ran ahead,
		// showed it first.
		if start, _ := t.ZoneBounds(); !start.IsZero() {
			_, before := start.Add(-time.Nanosecond).Zone()
			_, now := t.Zone()
			if first := t.Add(-time.Duration(before-now) * time.Second); before > now && first.Before(start) {
				return first
			}
		}
		return t
	}
	start, end := t.ZoneBounds()
	switch {
	case got.After(want) && !start.IsZero(): // placed after the gap: it began when this zone did
		return start
	case got.Before(want) && !end.IsZero(): // placed before the gap: it begins when this zone ends
		return end
	}
	return t
}

// periods returns the working periods of day, as times.
func (c Calendar) periods(day time.Time) [][2]time.Time {
	if c.off[day] {
		return nil
	}
	out := make([][2]time.Time, 0, len(c.days[day.Weekday()]))
	for _, s := range c.days[day.Weekday()] {
		out = append(out, [2]time.Time{
			c.at(day, time.Duration(s.start)*time.Minute),
			c.at(day, time.Duration(s.end)*time.Minute),
		})
	}
	return out
}

func nextDay(day time.Time) time.Time { return day.AddDate(0, 0, 1) }

func prevDay(day time.Time) time.Time { return day.AddDate(0, 0, -1) }

// Open reports whether t is inside working hours.
func (c Calendar) Open(t time.Time) bool {
	if !c.set {
		return true
	}
	for _, p := range c.periods(c.date(t)) {
		if !t.Before(p[0]) && t.Before(p[1]) {
			return true
		}
	}
	return false
}

// NextOpen returns t if it is inside working hours, else when they next
// begin.
func (c Calendar) NextOpen(t time.Time) time.Time {
	if !c.set {
		return t
	}
	day := c.date(t)
	for range horizon {
		for _, p := range c.periods(day) {
			if t.Before(p[1]) {
				if t.Before(p[0]) {
					return p[0]
				}
				return t
			}
		}
		day = nextDay(day)
	}
	return t
}

// LastClose returns t if it is inside working hours, else when they last
// ended before it (zero if not within the horizon).
func (c Calendar) LastClose(t time.Time) time.Time {
	if !c.set || c.Open(t) {
		return t
	}
	day := c.date(t)
	for range horizon {
		ps := c.periods(day)
		for i := len(ps) - 1; i >= 0; i-- {
			if !ps[i][1].After(t) {
				return ps[i][1]
			}
		}
		day = prevDay(day)
	}
	return time.Time{}
}

// Add returns the time d of working time after t: the clock runs only
// inside working hours.
func (c Calendar) Add(t time.Time, d time.Duration) time.Time {
	if !c.set || d <= 0 {
		return c.NextOpen(t).Add(max(d, 0))
	}
	left := d
	cur := t
	day := c.date(t)
	for range horizon {
		for _, p := range c.periods(day) {
			if !cur.Before(p[1]) {
				continue
			}
			start := p[0]
			if cur.After(start) {
				start = cur
			}
			avail := p[1].Sub(start)
			if left <= avail {
				return start.Add(left)
			}
			left -= avail
			cur = p[1]
		}
		day = nextDay(day)
	}
	return t.Add(d)
}

// Sub returns the time d of working time before t (never before from):
// where a warning goes ahead of a deadline.
func (c Calendar) Sub(t time.Time, d time.Duration, from time.Time) time.Time {
	if d <= 0 {
		return t
	}
	if !c.set {
		return maxTime(t.Add(-d), from)
	}
	left := d
	cur := t
	day := c.date(t)
	for range horizon {
		ps := c.periods(day)
		for i := len(ps) - 1; i >= 0; i-- {
			p := ps[i]
			if !cur.After(p[0]) {
				continue
			}
			end := p[1]
			if cur.Before(end) {
				end = cur
			}
			avail := end.Sub(p[0])
			if left <= avail {
				return maxTime(end.Add(-left), from)
			}
			left -= avail
			cur = p[0]
		}
		day = prevDay(day)
		if day.Before(c.date(from)) {
			return from
		}
	}
	return from
}

// AddDays returns the time as far into the n-th working day after t's as
// t is into its own, counted in working time. A working day is a date with
// working hours, a night shift's hours after midnight belonging to the
// date it began on: a shift of 22:00 to 06:00 is one working day, not two.
// A t outside working hours counts from the next opening, so that n days
// give n days of work. A n-th day shorter than that ends the count at its
// close.
func (c Calendar) AddDays(t time.Time, n int) time.Time {
	t = c.NextOpen(t)
	if n <= 0 {
		return t
	}
	if !c.set {
		return t.AddDate(0, 0, n)
	}
	day := c.date(t)
	if ps := c.periods(day); len(ps) > 0 && t.Before(ps[0][1]) && c.carriesOver(prevDay(day)) {
		day = prevDay(day) // in the night shift that began the day before
	}
	into := c.worked(c.shift(day)[0][0], t)
	for range horizon {
		day = nextDay(day)
		if ps := c.shift(day); len(ps) > 0 {
			if n--; n == 0 {
				// A shorter day ends there: its time runs into no other.
				if end := c.shiftEnd(day); c.worked(ps[0][0], end) <= into {
					return end
				}
				return c.Add(ps[0][0], into)
			}
		}
	}
	return t.AddDate(0, 0, n)
}

// shiftEnd is when day's shift ends: its last period's end, or the end of
// the next date's first period when the shift runs on past midnight.
func (c Calendar) shiftEnd(day time.Time) time.Time {
	ps := c.shift(day)
	end := ps[len(ps)-1][1]
	if c.carriesOver(day) {
		end = c.periods(nextDay(day))[0][1]
	}
	return end
}

// carriesOver reports whether day's hours run on past midnight as one
// shift: its last period ends at 24:00 after a rest of at least minRest
// (from the date's midnight, or its period before), and the next date's
// first begins at 00:00 and is followed by such a rest (or by nothing)
// before that date's own work. A desk open around the clock, written as
// two or three periods a day with no such rest, has working days of its
// dates.
func (c Calendar) carriesOver(day time.Time) bool {
	last, next := c.days[day.Weekday()], c.days[nextDay(day).Weekday()]
	if c.off[day] || c.off[nextDay(day)] || len(last) == 0 || len(next) == 0 {
		return false
	}
	l, n := last[len(last)-1], next[0]
	restBefore := l.start
	if len(last) > 1 {
		restBefore = l.start - last[len(last)-2].end
	}
	if l.end != 24*60 || restBefore < minRest || n.start != 0 || n.end == 24*60 {
		return false
	}
	return len(next) == 1 || next[1].start-n.end >= minRest
}

// minRest is the shortest break between a night shift's end and the next
// shift's start, in minutes: a shorter one (a lunch) is within a day.
const minRest = 4 * 60

// shift is day's periods less the night shift carried over from the day
// before: the working day that begins on day.
func (c Calendar) shift(day time.Time) [][2]time.Time {
	ps := c.periods(day)
	if len(ps) > 0 && c.carriesOver(prevDay(day)) {
		ps = ps[1:]
	}
	return ps
}

// worked is the working time from a to b.
func (c Calendar) worked(a, b time.Time) time.Duration {
	var d time.Duration
	for day := c.date(a); !day.After(c.date(b)); day = nextDay(day) {
		for _, p := range c.periods(day) {
			if e, s := minTime(p[1], b), maxTime(p[0], a); e.After(s) {
				d += e.Sub(s)
			}
		}
	}
	return d
}

func minTime(a, b time.Time) time.Time {
	if a.After(b) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}
