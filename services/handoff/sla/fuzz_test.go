package sla_test

import (
	"math/bits"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/handoff/sla"
)

// fuzzZones are zones whose clocks jump in the ways that break calendar
// code: DST at midnight (Santiago, Havana, Asuncion), half-hour DST (Lord
// Howe), a skipped day (Apia, 2011-12-30), DST at 2am (New York), none.
var fuzzZones = []string{"UTC", "America/New_York", "America/Santiago", "America/Havana", "America/Asuncion",
	"Australia/Lord_Howe", "Pacific/Apia", "Europe/Berlin", "Asia/Kolkata"}

// FuzzCalendar checks Add and Sub on calendars built from the input
// against a minute-by-minute walk of Open: Add(t, d) is d of working time
// after t, never lands just after a closed moment, and Sub undoes it.
// make fuzz runs it for longer; go test runs the seeds.
func FuzzCalendar(f *testing.F) {
	f.Add(uint8(1), uint8(0b0011111), uint16(9*60), uint16(17*60), uint16(0), uint16(0), int64(0), uint32(90))
	f.Add(uint8(2), uint8(0b1111111), uint16(0), uint16(24*60), uint16(0), uint16(0), int64(1_000_000), uint32(3000))
	f.Add(uint8(3), uint8(0b0100001), uint16(22*60), uint16(24*60), uint16(0), uint16(60), int64(23_000_000), uint32(61))
	f.Add(uint8(6), uint8(0b1111111), uint16(8*60), uint16(12*60), uint16(13*60), uint16(18*60), int64(375_000_000), uint32(600))
	f.Add(uint8(5), uint8(0b1000000), uint16(120), uint16(150), uint16(0), uint16(0), int64(-30_000_000), uint32(29))
	f.Fuzz(func(t *testing.T, zone, days uint8, s1, e1, s2, e2 uint16, offset int64, minutes uint32) {
		span := func(s, e uint16) time.Duration {
			s, e = s%(24*60+1), e%(24*60+1)
			return time.Duration(max(int(e)-int(s), 0)) * time.Minute
		}
		hhmm := func(m uint16) string {
			m %= 24*60 + 1
			return time.Date(2000, 1, 1, 0, int(m), 0, 0, time.UTC).Format("15:04")
		}
		endOf := func(m uint16) string {
			if m%(24*60+1) == 24*60 {
				return "24:00"
			}
			return hhmm(m)
		}
		h := &eventv1.WorkingHours{TimeZone: fuzzZones[int(zone)%len(fuzzZones)]}
		for d := range 7 {
			if days&(1<<d) == 0 {
				continue
			}
			wd := eventv1.Weekday(d + 1)
			h.Days = append(h.Days, &eventv1.WorkingDay{Day: wd, Start: hhmm(s1), End: endOf(e1)})
			if s2 != e2 {
				h.Days = append(h.Days, &eventv1.WorkingDay{Day: wd, Start: hhmm(s2), End: endOf(e2)})
			}
		}
		c, v := sla.NewCalendar("hours", h)
		if len(v) > 0 {
			return // refused hours (no day, end before start, overlap) are NewCalendar's tests' business
		}
		// A start within about ±15 years of 2011, the year Apia skipped a
		// day, on a whole minute, and up to two weeks of working time.
		start := time.Date(2011, 12, 29, 0, 0, 0, 0, time.UTC).Add(time.Duration(offset%8_000_000) * time.Minute)
		d := time.Duration(minutes%(14*24*60)+1) * time.Minute
		// Walks stop at a horizon of 800 days (then Add falls back to the
		// wall clock): stay well inside it.
		weekly := time.Duration(bits.OnesCount8(days&0x7f)) * (span(s1, e1) + span(s2, e2))
		if d > 100*weekly {
			return
		}
		end := c.Add(start, d)
		if !end.After(start) {
			t.Fatalf("%s: Add(%s, %s) = %s, not after the start", h, start, d, end)
		}
		if end.Sub(start) > 120*24*time.Hour {
			return // too far to walk minute by minute
		}
		if got := working(c, start, end); got != d {
			t.Fatalf("%s: Add(%s, %s) = %s: %s of working time between", h, start, d, end, got)
		}
		if !c.Open(end.Add(-time.Nanosecond)) {
			t.Fatalf("%s: Add(%s, %s) = %s, just after a closed moment", h, start, d, end)
		}
		if back := c.Sub(end, d, start.Add(-24*time.Hour)); working(c, back, end) != d {
			t.Fatalf("%s: Sub(%s, %s) = %s does not undo Add from %s", h, end, d, back, start)
		}
	})
}
