package sla_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/handoff/sla"
)

func weekdays(tz, start, end string) *eventv1.WorkingHours {
	h := &eventv1.WorkingHours{TimeZone: tz}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_FRIDAY; d++ {
		h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: start, End: end})
	}
	return h
}

func berlin(t *testing.T) sla.Calendar {
	t.Helper()
	c, v := sla.NewCalendar("hours", weekdays("Europe/Berlin", "09:00", "17:00"))
	if len(v) > 0 {
		t.Fatal(v)
	}
	return c
}

func at(t *testing.T, s string) time.Time {
	t.Helper()
	loc, _ := time.LoadLocation("Europe/Berlin")
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCalendarAdd(t *testing.T) {
	c := berlin(t)
	// 2026-03-06 is a Friday.
	for _, tc := range []struct {
		from string
		d    time.Duration
		want string
	}{
		{"2026-03-05 10:00", 2 * time.Hour, "2026-03-05 12:00"},
		{"2026-03-05 16:00", 2 * time.Hour, "2026-03-06 10:00"},    // overnight
		{"2026-03-06 16:30", time.Hour, "2026-03-09 09:30"},        // over the weekend
		{"2026-03-07 11:00", time.Hour, "2026-03-09 10:00"},        // starts on a Saturday
		{"2026-03-05 07:00", 30 * time.Minute, "2026-03-05 09:30"}, // before opening
		{"2026-03-05 10:00", 8 * time.Hour, "2026-03-06 10:00"},    // a whole working day
		{"2026-03-27 16:00", 2 * time.Hour, "2026-03-30 10:00"},    // DST starts on Sunday 29th
	} {
		if got := c.Add(at(t, tc.from), tc.d); !got.Equal(at(t, tc.want)) {
			t.Errorf("Add(%s, %s) = %s, want %s", tc.from, tc.d, got.In(c.Location()).Format("2006-01-02 15:04"), tc.want)
		}
	}
	if !c.Open(at(t, "2026-03-05 09:00")) || c.Open(at(t, "2026-03-05 17:00")) || c.Open(at(t, "2026-03-07 12:00")) {
		t.Error("Open: wrong at the edges or on a Saturday")
	}
	if got := c.NextOpen(at(t, "2026-03-06 18:00")); !got.Equal(at(t, "2026-03-09 09:00")) {
		t.Errorf("NextOpen after Friday close = %s", got)
	}
	if got := c.AddDays(at(t, "2026-03-05 10:00"), 3); !got.Equal(at(t, "2026-03-10 10:00")) {
		t.Errorf("AddDays(Thu, 3) = %s, want Tue", got)
	}
	if got := c.AddDays(at(t, "2026-03-05 18:00"), 1); !got.Equal(at(t, "2026-03-09 09:00")) {
		t.Errorf("AddDays(Thu evening, 1) = %s, want Monday's opening (Friday 18:00 is closed)", got)
	}
	if got := c.Sub(at(t, "2026-03-09 09:30"), time.Hour, at(t, "2026-03-01 00:00")); !got.Equal(at(t, "2026-03-06 16:30")) {
		t.Errorf("Sub over the weekend = %s", got)
	}
}

// n working days from a time outside working hours are counted from the
// next opening: accepted on a Sunday morning, one working day is Monday's,
// all of it.
func TestCalendarAddDaysOutsideHours(t *testing.T) {
	c := berlin(t)
	for _, tc := range []struct {
		from string
		n    int
		want string
	}{
		{"2026-03-08 08:00", 1, "2026-03-10 09:00"},  // Sunday morning
		{"2026-03-07 11:00", 1, "2026-03-10 09:00"},  // Saturday
		{"2026-03-05 07:00", 1, "2026-03-06 09:00"},  // Thursday before opening
		{"2026-03-08 20:00", 10, "2026-03-23 09:00"}, // Sunday evening
	} {
		from := at(t, tc.from)
		got := c.AddDays(from, tc.n)
		if !got.Equal(at(t, tc.want)) {
			t.Errorf("AddDays(%s, %d) = %s, want %s", tc.from, tc.n, got.In(c.Location()).Format("2006-01-02 15:04"), tc.want)
		}
		if w, want := working(c, from, got), time.Duration(tc.n)*8*time.Hour; w < want {
			t.Errorf("AddDays(%s, %d) leaves %s of working time, want %s", tc.from, tc.n, w, want)
		}
	}
}

func TestCalendarAlways(t *testing.T) {
	c, v := sla.NewCalendar("hours", nil)
	if len(v) > 0 {
		t.Fatal(v)
	}
	now := time.Date(2026, 3, 7, 3, 0, 0, 0, time.UTC)
	if got := c.Add(now, 90*time.Minute); !got.Equal(now.Add(90 * time.Minute)) {
		t.Errorf("Always.Add = %s", got)
	}
	if !c.Open(now) {
		t.Error("Always is closed")
	}
}

func TestCalendarInvalid(t *testing.T) {
	for _, tc := range []struct {
		h     *eventv1.WorkingHours
		field string
	}{
		{&eventv1.WorkingHours{TimeZone: "Mars/Olympus", Days: weekdays("", "09:00", "17:00").Days}, "hours.time_zone"},
		{&eventv1.WorkingHours{TimeZone: "UTC"}, "hours.days"},
		{weekdays("UTC", "9", "17:00"), "hours.days[0].start"},
		{weekdays("UTC", "09:00", "24:30"), "hours.days[0].end"},
		{weekdays("UTC", "17:00", "09:00"), "hours.days[0].end"},
		{&eventv1.WorkingHours{Days: []*eventv1.WorkingDay{{Start: "09:00", End: "10:00"}}}, "hours.days[0].day"},
		{&eventv1.WorkingHours{Days: []*eventv1.WorkingDay{
			{Day: eventv1.Weekday_WEEKDAY_MONDAY, Start: "09:00", End: "12:00"},
			{Day: eventv1.Weekday_WEEKDAY_MONDAY, Start: "11:00", End: "13:00"}}}, "hours.days[1]"},
	} {
		_, v := sla.NewCalendar("hours", tc.h)
		if len(v) == 0 || v[0].Field != tc.field {
			t.Errorf("%v: violations %v, want field %s", tc.h, v, tc.field)
		}
	}
}

// Property: Add(t, d) lies inside working hours (or at a period's end),
// the working time between t and it is exactly d, and Sub undoes Add.
func TestCalendarAddProperty(t *testing.T) {
	h := weekdays("America/New_York", "08:30", "12:00")
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_FRIDAY; d++ {
		h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: "13:00", End: "18:15"})
	}
	h.Days = append(h.Days, &eventv1.WorkingDay{Day: eventv1.Weekday_WEEKDAY_SATURDAY, Start: "10:00", End: "14:00"})
	h.Holidays = []string{"2026-01-19", "2026-05-25", "2026-07-03", "2026-07-04", "2026-11-26", "2026-12-24", "2026-12-25"}
	c, v := sla.NewCalendar("hours", h)
	if len(v) > 0 {
		t.Fatal(v)
	}
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 150 {
		start := base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
		d := time.Duration(r.Int64N(int64(60*time.Hour))) + time.Minute
		end := c.Add(start, d)
		if got := working(c, start, end); got != d {
			t.Fatalf("Add(%s, %s) = %s: %s of working time between", start, d, end, got)
		}
		if !c.Open(end.Add(-time.Nanosecond)) {
			t.Fatalf("Add(%s, %s) = %s, just after a closed moment", start, d, end)
		}
		if back := c.Sub(end, d, start.Add(-24*time.Hour)); working(c, back, end) != d {
			t.Fatalf("Sub(%s, %s) = %s does not undo Add from %s", end, d, back, start)
		}
	}
}

// working measures working time between a and b by walking minutes.
func working(c sla.Calendar, a, b time.Time) time.Duration {
	var total time.Duration
	for t := a; t.Before(b); {
		step := time.Minute - time.Duration(t.UnixNano()%int64(time.Minute))
		next := t.Add(step)
		if next.After(b) {
			next = b
		}
		if c.Open(t) {
			total += next.Sub(t)
		}
		t = next
	}
	return total
}

// A night team's shift runs past midnight, written as two periods (22:00
// to 24:00, and 00:00 to 06:00 the next date): one shift is one working
// day, so n days give n shifts' work however many weekends they cross.
func TestCalendarAddDaysNightShift(t *testing.T) {
	h := &eventv1.WorkingHours{TimeZone: "Europe/Berlin"}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_FRIDAY; d++ {
		h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: "22:00", End: "24:00"},
			&eventv1.WorkingDay{Day: d%7 + 1, Start: "00:00", End: "06:00"}) // the next weekday; Friday's is Saturday
	}
	checkAddDays(t, h, 8*time.Hour, []addDaysCase{
		{"2026-03-03 23:00", 2, "2026-03-05 23:00"}, // Tuesday night
		{"2026-03-06 23:00", 2, "2026-03-10 23:00"}, // Friday night: Monday's and Tuesday's shifts
		{"2026-03-07 03:00", 1, "2026-03-10 03:00"}, // Friday's shift, after midnight
		{"2026-03-07 03:00", 3, "2026-03-12 03:00"},
		{"2026-03-07 12:00", 1, "2026-03-10 22:00"}, // closed: from Monday's opening
	})
}

// A desk open from morning to past midnight, and a long night shift, are
// one working day each, however long.
func TestCalendarAddDaysLongShiftsPastMidnight(t *testing.T) {
	for _, tc := range []struct {
		start, end, tail string
		perDay           time.Duration
		cases            []addDaysCase
	}{
		{"09:00", "24:00", "01:00", 16 * time.Hour, []addDaysCase{{"2026-03-02 10:00", 1, "2026-03-03 10:00"}, {"2026-03-06 23:30", 1, "2026-03-09 23:30"}}},
		{"18:00", "24:00", "07:00", 13 * time.Hour, []addDaysCase{{"2026-03-02 23:00", 1, "2026-03-03 23:00"}, {"2026-03-03 05:00", 2, "2026-03-05 05:00"}}},
	} {
		h := &eventv1.WorkingHours{TimeZone: "Europe/Berlin"}
		for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_FRIDAY; d++ {
			h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: tc.start, End: tc.end},
				&eventv1.WorkingDay{Day: d%7 + 1, Start: "00:00", End: tc.tail})
		}
		checkAddDays(t, h, tc.perDay, tc.cases)
	}
}

// A desk open around the clock on weekdays, written as periods that meet
// at midnight, has working days of its dates: no night shift joins them.
func TestCalendarAddDaysAroundTheClock(t *testing.T) {
	for _, split := range [][]string{{"00:00", "12:00", "12:00", "24:00"}, {"00:00", "12:00", "12:30", "24:00"}, {"00:00", "08:00", "08:00", "16:00", "16:00", "24:00"}} {
		h := &eventv1.WorkingHours{TimeZone: "Europe/Berlin"}
		for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_FRIDAY; d++ {
			for i := 0; i < len(split); i += 2 {
				h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: split[i], End: split[i+1]})
			}
		}
		checkAddDays(t, h, 0, []addDaysCase{
			{"2026-03-02 10:00", 1, "2026-03-03 10:00"},
			{"2026-03-03 10:00", 3, "2026-03-06 10:00"},
			{"2026-03-05 10:00", 1, "2026-03-06 10:00"},
		})
	}
	// ... also when its last date of the week is one shorter period.
	h := &eventv1.WorkingHours{TimeZone: "Europe/Berlin", Days: []*eventv1.WorkingDay{{Day: eventv1.Weekday_WEEKDAY_FRIDAY, Start: "00:00", End: "18:00"}}}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_THURSDAY; d++ {
		h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: "00:00", End: "12:00"}, &eventv1.WorkingDay{Day: d, Start: "12:00", End: "24:00"})
	}
	checkAddDays(t, h, 0, []addDaysCase{{"2026-03-05 10:00", 1, "2026-03-06 10:00"}})
}

type addDaysCase struct {
	from string
	n    int
	want string
}

// A working day shorter than the time already worked on the day counted
// from ends the count at its close: it does not run into the day after.
func TestCalendarAddDaysEndsWithAShorterDay(t *testing.T) {
	h := weekdays("Europe/Berlin", "09:00", "17:00")
	h.Days[4].End = "13:00" // Friday
	checkAddDays(t, h, 0, []addDaysCase{
		{"2026-03-05 16:00", 1, "2026-03-06 13:00"}, // Thursday, 7 h in: Friday's 4 h end it
		{"2026-03-05 11:00", 1, "2026-03-06 11:00"},
		{"2026-03-04 16:00", 2, "2026-03-06 13:00"},
		{"2026-03-06 12:00", 1, "2026-03-09 12:00"},
	})
	// So with a night shift whose next day is shorter.
	night := &eventv1.WorkingHours{TimeZone: "Europe/Berlin"}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_FRIDAY; d++ {
		end := "06:00"
		if d == eventv1.Weekday_WEEKDAY_THURSDAY {
			end = "02:00" // Thursday's shift ends Friday 02:00
		}
		night.Days = append(night.Days, &eventv1.WorkingDay{Day: d, Start: "22:00", End: "24:00"},
			&eventv1.WorkingDay{Day: d%7 + 1, Start: "00:00", End: end})
	}
	checkAddDays(t, night, 0, []addDaysCase{{"2026-03-05 05:00", 1, "2026-03-06 02:00"}, {"2026-03-04 05:00", 1, "2026-03-05 05:00"}})
}

// checkAddDays checks AddDays over hours, and with a day's work (perDay,
// if set) that n days leave n days of working time.
func checkAddDays(t *testing.T, h *eventv1.WorkingHours, perDay time.Duration, cases []addDaysCase) {
	t.Helper()
	c, v := sla.NewCalendar("hours", h)
	if len(v) > 0 {
		t.Fatal(v)
	}
	for _, tc := range cases {
		from := at(t, tc.from)
		got := c.AddDays(from, tc.n)
		if !got.Equal(at(t, tc.want)) {
			t.Errorf("AddDays(%s, %d) = %s, want %s", tc.from, tc.n, got.In(c.Location()).Format("2006-01-02 15:04"), tc.want)
		}
		if w, want := working(c, from, got), time.Duration(tc.n)*perDay; perDay > 0 && w != want {
			t.Errorf("AddDays(%s, %d) leaves %s of working time, want %s", tc.from, tc.n, w, want)
		}
	}
}

// Around clock changes where a local midnight or a whole date does not
// exist, Add is still the working time between, against a minute walk.
func TestCalendarSkippedMidnights(t *testing.T) {
	for _, tc := range []struct {
		zone  string
		start time.Time // a day or so before the change
	}{
		{"America/Santiago", time.Date(2026, 9, 4, 12, 0, 0, 0, time.UTC)},  // 2026-09-06 00:00 skipped
		{"America/Asuncion", time.Date(2024, 10, 4, 12, 0, 0, 0, time.UTC)}, // 2024-10-06 00:00 skipped
		{"America/Havana", time.Date(2026, 3, 6, 12, 0, 0, 0, time.UTC)},    // 2026-03-08 00:00 skipped
		{"Pacific/Apia", time.Date(2011, 12, 28, 22, 0, 0, 0, time.UTC)},    // 2011-12-30 skipped
	} {
		h := &eventv1.WorkingHours{TimeZone: tc.zone}
		for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_SUNDAY; d++ {
			h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: "00:00", End: "02:00"},
				&eventv1.WorkingDay{Day: d, Start: "10:00", End: "11:00"})
		}
		c, v := sla.NewCalendar("hours", h)
		if len(v) > 0 {
			t.Fatal(v)
		}
		for _, d := range []time.Duration{time.Hour, 3 * time.Hour, 5 * time.Hour, 9 * time.Hour, 13 * time.Hour} {
			end := c.Add(tc.start, d)
			if got := working(c, tc.start, end); got != d {
				t.Errorf("%s: Add(%s, %s) = %s: %s of working time between", tc.zone, tc.start, d, end, got)
			}
			if back := c.Sub(end, d, tc.start.Add(-24*time.Hour)); working(c, back, end) != d {
				t.Errorf("%s: Sub(%s, %s) = %s does not undo Add", tc.zone, end, d, back)
			}
		}
	}
}

// A working period that starts inside the hour clocks show twice (going
// back) starts the first time they show it, east of Greenwich as west of
// it: the period is as long as it reads, plus the repeated hour it spans.
func TestCalendarRepeatedHourStartsAtItsFirstShowing(t *testing.T) {
	for _, tc := range []struct {
		zone, start, end string
		first            time.Time // the first time the clock shows start
		long             time.Duration
	}{
		// Sundays. Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET.
		{"Europe/Berlin", "02:00", "10:00", time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC), 9 * time.Hour},
		// New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST.
		{"America/New_York", "01:00", "10:00", time.Date(2026, 11, 1, 5, 0, 0, 0, time.UTC), 10 * time.Hour},
	} {
		h := &eventv1.WorkingHours{TimeZone: tc.zone, Days: []*eventv1.WorkingDay{{Day: eventv1.Weekday_WEEKDAY_SUNDAY, Start: tc.start, End: tc.end}}}
		c, v := sla.NewCalendar("hours", h)
		if len(v) > 0 {
			t.Fatal(v)
		}
		if c.Open(tc.first.Add(-time.Minute)) || !c.Open(tc.first.Add(30*time.Minute)) {
			t.Errorf("%s: open a minute before %v: %v; half an hour after: %v; want closed, then open",
				tc.zone, tc.first, c.Open(tc.first.Add(-time.Minute)), c.Open(tc.first.Add(30*time.Minute)))
		}
		if got := working(c, tc.first.Add(-time.Hour), tc.first.Add(24*time.Hour)); got != tc.long {
			t.Errorf("%s: the period holds %s of working time, want %s", tc.zone, got, tc.long)
		}
	}
}

// A holiday is a day off: no working time on it, and working days and
// openings skip it.
func TestCalendarHolidays(t *testing.T) {
	h := weekdays("Europe/Berlin", "09:00", "17:00")
	h.Holidays = []string{"2026-12-24", "2026-12-25"} // a Thursday and a Friday
	c, v := sla.NewCalendar("hours", h)
	if len(v) > 0 {
		t.Fatal(v)
	}
	if c.Open(at(t, "2026-12-24 10:00")) || !c.Open(at(t, "2026-12-23 10:00")) || !c.Open(at(t, "2026-12-28 10:00")) {
		t.Error("open on the holiday, or closed on the days around it")
	}
	for _, tc := range []struct {
		what      string
		got, want time.Time
	}{
		{"next opening after the last day before", c.NextOpen(at(t, "2026-12-23 17:30")), at(t, "2026-12-28 09:00")},
		{"two hours from an hour before closing", c.Add(at(t, "2026-12-23 16:00"), 2*time.Hour), at(t, "2026-12-28 10:00")},
		{"a working day on", c.AddDays(at(t, "2026-12-23 11:00"), 1), at(t, "2026-12-28 11:00")},
		{"an hour back from the first opening after", c.Sub(at(t, "2026-12-28 09:30"), time.Hour, at(t, "2026-12-01 00:00")), at(t, "2026-12-23 16:30")},
		{"last close seen from the weekend after", c.LastClose(at(t, "2026-12-26 10:00")), at(t, "2026-12-23 17:00")},
		{"last close while open", c.LastClose(at(t, "2026-12-23 10:00")), at(t, "2026-12-23 10:00")},
		{"last close before the opening", c.LastClose(at(t, "2026-12-28 08:59")), at(t, "2026-12-23 17:00")},
	} {
		if !tc.got.Equal(tc.want) {
			t.Errorf("%s: %s, want %s", tc.what, tc.got, tc.want)
		}
	}
	// The date is the team's: a holiday begins at its local midnight.
	if c.Open(at(t, "2026-12-24 00:30").Add(9 * time.Hour)) {
		t.Error("open on the holiday's morning")
	}
}

func TestCalendarHolidaysChecked(t *testing.T) {
	h := weekdays("Europe/Berlin", "09:00", "17:00")
	h.Holidays = []string{"2026-12-24", "24.12.2026", "2026-02-30"}
	_, v := sla.NewCalendar("hours", h)
	if len(v) != 2 || v[0].Field != "hours.holidays[1]" || v[1].Field != "hours.holidays[2]" {
		t.Errorf("violations %+v, want holidays[1] and [2]", v)
	}
	if _, v := sla.NewCalendar("hours", &eventv1.WorkingHours{Holidays: []string{"2026-12-24"}}); len(v) != 1 || v[0].Field != "hours.days" {
		t.Errorf("holidays without working days: %+v, want hours.days refused", v)
	}
	// A closure is a holiday up to a month long, weekends around it
	// counted: 31 days closed pass, 32 do not.
	closure := func(from string, n int) []string {
		d, _ := time.Parse(time.DateOnly, from)
		var out []string
		for range n {
			if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
				out = append(out, d.Format(time.DateOnly))
			}
			d = d.AddDate(0, 0, 1)
		}
		return out
	}
	h.Holidays = closure("2026-12-07", 29) // Mon 7th to Mon 4th: with the weekend before, 2026-12-05 to 01-04
	if _, v := sla.NewCalendar("hours", h); len(v) != 0 {
		t.Errorf("a 31-day closure: %+v", v)
	}
	h.Holidays = closure("2026-12-07", 30) // to Tue 5th: 32 days from the 5th
	if _, v := sla.NewCalendar("hours", h); len(v) != 1 || v[0].Field != "hours.holidays" || !strings.Contains(v[0].Description, "2026-12-05") {
		t.Errorf("a 32-day closure: %+v, want hours.holidays refused from 2026-12-05", v)
	}
}
