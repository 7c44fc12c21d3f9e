// Package form holds intake's rules for what a valid form fill is and how
// its identity is normalized. Pure: no transport, no storage.
package form

import (
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Violation is one refused field, named by its path in the request.
type Violation struct {
	Field       string
	Description string
}

// Violations collects refusals; the zero value is ready to use.
type Violations []Violation

// Add records a refusal of field.
func (v *Violations) Add(field, format string, args ...any) {
	*v = append(*v, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// Limits on field lengths, in characters.
const (
	MaxName       = 100
	MaxEmail      = 254
	MaxNotes      = 2000
	MaxCompany    = 200
	MaxTitle      = 200
	MaxIndustry   = 100
	MaxUTM        = 200
	MaxExternalID = 200
	MaxKey        = 200
	MaxDetail     = 500
	MaxEmployees  = 10_000_000
)

var (
	slugRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,99}$`)
	idRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	e164RE  = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	phoneOK = strings.NewReplacer(" ", "", "-", "", "(", "", ")", "", ".", "", "/", "")
)

// Text checks a free-text field: valid UTF-8 (the wire already ensures
// it for proto strings; other callers may not), no control characters
// but newlines and tabs in multi-line text, at most max characters.
func Text(v *Violations, field, s string, max int, multiline bool) {
	if !utf8.ValidString(s) {
		v.Add(field, "must be valid UTF-8")
		return
	}
	if n := utf8.RuneCountInString(s); n > max {
		v.Add(field, "must be at most %d characters, got %d", max, n)
		return
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r')) {
			v.Add(field, "must not contain control characters")
			return
		}
	}
}

// Slug checks a short lowercase identifier such as a source or system name.
func Slug(v *Violations, field, s string, required bool) {
	switch {
	case s == "" && required:
		v.Add(field, "is required")
	case s != "" && !slugRE.MatchString(s):
		v.Add(field, "must be lowercase letters, digits, '.', '_' or '-' (at most 100)")
	}
}

// ID checks a caller-chosen identifier (campaign id, activity id, cost id):
// it becomes part of a NATS subject, so only a safe alphabet is allowed.
func ID(v *Violations, field, s string, required bool) {
	switch {
	case s == "" && required:
		v.Add(field, "is required")
	case s != "" && !idRE.MatchString(s):
		v.Add(field, "must be 1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
	}
}

// LeadID checks a lead id: a UUID in canonical form, the only shape
// Leadflow gives a lead, so that no caller's text becomes a subject token.
func LeadID(v *Violations, field, s string) {
	if s == "" {
		v.Add(field, "is required")
		return
	}
	if !envelope.ValidLeadID(s) {
		v.Add(field, envelope.LeadIDRule)
	}
}

// Email normalizes an address (trimmed of spaces and of the invisible
// characters exports leave at a field's ends, lowercased) and checks it.
// It returns the normalized address and its domain. An invisible
// character inside is refused: net/mail takes any non-ASCII rune, and
// the same person would get another token, so another lead.
func Email(v *Violations, field, s string) (string, string) {
	s = strings.ToLower(trimHidden(s))
	if s == "" {
		v.Add(field, "is required")
		return "", ""
	}
	if !utf8.ValidString(s) || len(s) > MaxEmail {
		v.Add(field, "must be valid UTF-8 of at most %d bytes", MaxEmail)
		return "", ""
	}
	if i := hiddenAt(s); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		v.Add(field, "must not contain spaces or invisible characters (U+%04X at byte %d)", r, i)
		return "", ""
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || addr.Name != "" {
		v.Add(field, "must be a plain email address like name@example.com")
		return "", ""
	}
	local, domain, _ := strings.Cut(s, "@")
	if len(local) > 64 {
		v.Add(field, "local part must be at most 64 bytes")
		return "", ""
	}
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		v.Add(field, "must have a domain like example.com")
		return "", ""
	}
	return s, domain
}

// trimHidden trims s of spaces and of the invisible characters exports
// leave at a field's ends (a byte-order mark, a zero-width space).
func trimHidden(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || invisible(r) })
}

// invisible reports whether r prints nothing: a control or format
// character (a byte-order mark, a zero-width space or joiner), or one
// Unicode says to ignore (a variation selector, a grapheme joiner).
func invisible(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}

// hiddenAt is the byte offset of the first space or invisible character
// in s, -1 if none. A zero-width (non-)joiner between two letters beyond
// ASCII is the word's own (Persian, Indic scripts; RFC 6531, IDNA2008);
// next to an ASCII letter it is a copy-paste's.
func hiddenAt(s string) int { return hiddenIn(s, true) }

// hiddenIn is hiddenAt, spaces counted only when spaces is set; control
// characters are left to Text.
func hiddenIn(s string, spaces bool) int {
	prev := rune(-1)
	for i, r := range s {
		if spaces && unicode.IsSpace(r) || invisible(r) && (spaces || !unicode.IsControl(r)) {
			next, _ := utf8.DecodeRuneInString(s[i+utf8.RuneLen(r):])
			joiner := r == '\u200c' || r == '\u200d'
			if !joiner || !wordLetter(prev) || !wordLetter(next) {
				return i
			}
		}
		prev = r
	}
	return -1
}

func wordLetter(r rune) bool {
	return r > unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsMark(r))
}

// Phone normalizes a phone number to E.164 (spaces, dashes, dots, slashes
// and parentheses dropped, and a "(0)" in an international number; a leading
// 00 read as +) and checks it.
func Phone(v *Violations, field, s string) string {
	if s == "" {
		return ""
	}
	p := strings.TrimSpace(s)
	if strings.HasPrefix(p, "+") || strings.HasPrefix(p, "00") {
		// "+44 (0)20 …": a trunk 0 in brackets is dialled only from
		// inside the country, never in an international number.
		p = strings.Replace(p, "(0)", "", 1)
	}
	p = phoneOK.Replace(p)
	if strings.HasPrefix(p, "00") {
		p = "+" + p[2:]
	}
	if !e164RE.MatchString(p) {
		v.Add(field, "must be an international number like +4915112345678 (E.164; an extension after it as \"ext. 23\", \"x23\" or in phone_extension)")
		return ""
	}
	return p
}

// extensionRE finds an extension written after a number: "ext. 23",
// "extension 23", "x23", "#23", RFC 3966's ";ext=23".
var extensionRE = regexp.MustCompile(`(?i)^(.*?[0-9)])\s*(?:;\s*ext=|,?\s*(?:ext\.?|extension|x|#)\s*)([0-9]+)\s*$`)

// SplitExtension splits a phone written with its extension into the
// number and the extension's digits; one without is returned whole.
func SplitExtension(s string) (number, ext string) {
	if m := extensionRE.FindStringSubmatch(strings.TrimSpace(s)); m != nil {
		return m[1], m[2]
	}
	return s, ""
}

// Extension checks a phone extension given on its own (given) against
// the one written in the phone (inPhone) and returns the one to store:
// digits, at most 10, and only beside a phone.
func Extension(v *Violations, field, given, inPhone, phone string) string {
	given = strings.TrimSpace(given)
	switch {
	case given == "" && len(inPhone) > 10:
		v.Add(field, "must be 1-10 digits (the one written in the phone has %d)", len(inPhone))
	case given == "":
		return inPhone
	case strings.TrimSpace(phone) == "":
		v.Add(field, "needs a phone number beside it")
	case len(given) > 10 || strings.Trim(given, "0123456789") != "":
		v.Add(field, "must be 1-10 digits")
	case inPhone != "" && inPhone != given:
		v.Add(field, "differs from the extension written in the phone (%s)", inPhone)
	}
	return given
}

// Country checks an ISO 3166-1 alpha-2 code and returns it upper-cased.
func Country(v *Violations, field, s string) string {
	if s == "" {
		return ""
	}
	c := strings.ToUpper(strings.TrimSpace(s))
	if !envelope.IsCountry(c) {
		v.Add(field, "must be an ISO 3166-1 alpha-2 country code like DE or US")
		return ""
	}
	return c
}

// Time checks an optional event time: not before 2000 and not more than
// five minutes ahead of now (clock skew), so a typo cannot date a lead
// into another decade.
func Time(v *Violations, field string, t, now time.Time) {
	if t.IsZero() {
		return
	}
	if t.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || t.After(now.Add(envelope.MaxClockAhead)) {
		v.Add(field, "must be between 2000-01-01 and now")
	}
}

// Planned checks a time that may lie ahead (a campaign's dates): between
// 2000-01-01 and ten years from now, so the reports that compare with it
// see a date a plan could have.
func Planned(v *Violations, field string, t, now time.Time) {
	if t.IsZero() {
		return
	}
	if t.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || t.After(now.AddDate(10, 0, 0)) {
		v.Add(field, "must be between 2000-01-01 and ten years from now")
	}
}

// Enum checks that an enum value is set and one the schema defines.
func Enum(v *Violations, field string, value int32, defined func(int32) bool, required bool) {
	switch {
	case value == 0 && required:
		v.Add(field, "is required")
	case value != 0 && !defined(value):
		v.Add(field, "has unknown value %d", value)
	}
}

// Consents checks a consent list: each channel once, channel and status set.
func Consents(v *Violations, field string, cs []*eventv1.Consent) {
	var seen []eventv1.ConsentChannel
	for i, c := range cs {
		f := fmt.Sprintf("%s[%d]", field, i)
		Enum(v, f+".channel", int32(c.GetChannel()), definedIn(eventv1.ConsentChannel_name), true)
		Enum(v, f+".status", int32(c.GetStatus()), definedIn(eventv1.ConsentStatus_name), true)
		if slices.Contains(seen, c.GetChannel()) {
			v.Add(f+".channel", "appears twice")
		}
		seen = append(seen, c.GetChannel())
	}
}

// Money checks an amount: an ISO 4217-shaped code and a non-negative amount.
func Money(v *Violations, field string, m *eventv1.Money, required bool) {
	if m == nil {
		if required {
			v.Add(field, "is required")
		}
		return
	}
	if len(m.GetCurrency()) != 3 || strings.ContainsFunc(m.GetCurrency(), func(r rune) bool { return r < 'A' || r > 'Z' }) {
		// Whether it is one ISO 4217 lists now is asked where a campaign
		// takes its currency: one bound to a withdrawn code goes on.
		v.Add(field+".currency", "must be an ISO 4217 code like EUR")
	}
	switch {
	case m.GetMinorUnits() < 0:
		v.Add(field+".minor_units", "must not be negative")
	case m.GetMinorUnits() > envelope.MaxMinorUnits:
		v.Add(field+".minor_units", "must be at most %d", int64(envelope.MaxMinorUnits))
	}
}

// Actor checks an optional actor.
func Actor(v *Violations, field string, a *eventv1.Actor) {
	if a == nil {
		return
	}
	Enum(v, field+".kind", int32(a.GetKind()), definedIn(eventv1.ActorKind_name), true)
	ID(v, field+".id", a.GetId(), true)
	Enum(v, field+".team", int32(a.GetTeam()), definedIn(eventv1.Team_name), false)
}

// Key checks an idempotency key: printable ASCII, at most MaxKey.
func Key(v *Violations, field, s string) {
	if len(s) > MaxKey {
		v.Add(field, "must be at most %d characters", MaxKey)
		return
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			v.Add(field, "must be printable ASCII without spaces")
			return
		}
	}
	if envelope.HoldsEmail(s) {
		v.Add(field, "must not hold an email address: the key is kept in the clear, also after the lead's erasure")
	}
}

// Industry checks a lead's industry: a coarse field kept in the clear
// for scoring and routing, also after the lead's erasure, so it must not
// carry what names the person (an email address, seven digits or more
// written as a phone number's). A name cannot be told from words.
func Industry(v *Violations, field, s string) {
	Text(v, field, s, MaxIndustry, false)
	switch {
	case envelope.HoldsEmail(s):
		v.Add(field, "must name an industry: it is kept in the clear, also after the lead's erasure, and this one holds an email address")
	case longestNumber(s) >= 7: // an industry code (NAICS) has up to 6 digits
		v.Add(field, "must name an industry: it is kept in the clear, also after the lead's erasure, and this one holds a number as long as a phone number's")
	}
}

// longestNumber is the most digits in one number of s, written as phone
// numbers are: digits with spaces, dots, dashes, brackets or a plus
// between them.
func longestNumber(s string) int {
	longest, digits := 0, 0
	for _, r := range s {
		switch {
		case unicode.IsDigit(r):
			digits++
			longest = max(longest, digits)
		case strings.ContainsRune(" .-()+", r):
		default:
			digits = 0
		}
	}
	return longest
}

// Reason checks an operator's reason (an erasure's, a merge's): required
// text, kept in the clear, also after the lead's erasure, so an email
// address in it would keep naming the person. (A name cannot be told from
// words.)
func Reason(v *Violations, field, s string, max int) {
	if strings.TrimSpace(s) == "" {
		v.Add(field, "is required")
	}
	Text(v, field, s, max, false)
	if envelope.HoldsEmail(s) {
		v.Add(field, "must not name the person: it is kept in the clear, also after the lead's erasure, and this one holds an email address")
	}
}

func definedIn(names map[int32]string) func(int32) bool {
	return func(x int32) bool { _, ok := names[x]; return ok }
}

// Defined reports whether an enum value is one of names (a generated
// <Enum>_name map).
func Defined(names map[int32]string) func(int32) bool { return definedIn(names) }
