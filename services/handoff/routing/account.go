package routing

import (
	"slices"
	"strings"
	"unicode"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
	"golang.org/x/text/unicode/norm"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// NormalizeDomain is a domain as accounts are matched by it: lower case,
// without surrounding space, trailing dots or leading "www."s, and an
// internationalized name in its ASCII (punycode) form, so müller.de and
// xn--mller-kva.de are one domain. Repeated until nothing changes, so
// normalizing twice changes nothing.
func NormalizeDomain(d string) string {
	for {
		n := strings.ToLower(d)
		for {
			t := strings.TrimPrefix(strings.TrimRight(strings.TrimSpace(n), "."), "www.")
			if t == n {
				break
			}
			n = t
		}
		// A name IDNA refuses stays as it is: the domain check refuses it.
		if a, err := idna.Lookup.ToASCII(n); err == nil {
			n = a
		}
		if n == d {
			return n
		}
		d = n
	}
}

// legalSuffixes are the legal forms a company name may end with; matching
// ignores them ("Acme Inc." and "ACME GmbH" are one company). Slashes
// join, so "A/S" is "as".
var legalSuffixes = map[string]bool{
	"inc": true, "incorporated": true, "corp": true, "corporation": true, "co": true, "company": true,
	"ltd": true, "limited": true, "llc": true, "llp": true, "lp": true, "plc": true,
	"gmbh": true, "ag": true, "kg": true, "ug": true, "se": true, "sa": true, "sas": true, "sarl": true, "sl": true,
	"srl": true, "spa": true, "bv": true, "nv": true, "oy": true, "ab": true, "as": true, "aps": true, "pty": true, "pte": true,
	"ks": true, "ps": true, "kgaa": true, "oyj": true, "ltda": true, "pvt": true, "private": true, "rl": true,
}

// NormalizeCompany is a company name as accounts are matched by it:
// folded to one form (NFKD compatibility forms, so full-width "ＡＣＭＥ" is
// "acme"; the marks people leave out dropped (fold), so "Müller" is
// "muller" however it was typed, and the marks that make letters kept;
// lower case), punctuation dropped (dots, apostrophes and slashes join,
// "S.A." is "sa", "A/S" is "as"; anything else separates words), "&"
// and "and" dropped ("Procter & Gamble" is "Procter and Gamble"), legal
// suffixes such as Inc, GmbH, Ltd, LLC, SA, AG or A/S removed from the
// end and a leading "The" from the start. A name that is nothing but
// these is kept as it is.
func NormalizeCompany(name string) string {
	var b strings.Builder
	for _, r := range fold(name) {
		switch {
		case r == '.' || r == '\'' || r == '’' || r == '/':
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r) // a mark kept by fold is part of its word (an Indic vowel sign)
		default:
			b.WriteRune(' ')
		}
	}
	words := strings.Fields(b.String())
	n := len(words)
	// "GmbH & Co. KG": the "and" between legal forms is one of them.
	for n > 1 && (legalSuffixes[words[n-1]] || words[n-1] == "and") {
		n--
	}
	words = words[:n]
	if rest := slices.DeleteFunc(slices.Clone(words), func(w string) bool { return w == "and" }); len(rest) > 0 {
		words = rest
	}
	for len(words) > 1 && words[0] == "the" {
		words = words[1:]
	}
	return strings.Join(words, " ")
}

// fold is s in one form for comparison: compatibility characters
// decomposed (full-width letters, ligatures), the marks people leave out
// dropped (an "ü" typed as u and a diaeresis is the same "u"; Arabic
// vowel marks and shadda, Hebrew points), lower case. The marks that make
// another letter are kept: in Devanagari or Thai they are the vowels
// ("पुरी" is not "परी"), and Cyrillic "й" is not "и". Again until
// nothing changes: lower-casing may make a decomposable letter.
func fold(s string) string {
	for range 4 {
		var b strings.Builder
		var base rune // the letter the marks that follow belong to
		for _, r := range norm.NFKD.String(s) {
			switch {
			case !unicode.Is(unicode.Mn, r):
				base = r
				b.WriteRune(unicode.ToLower(r))
			case !optionalMark(base, r):
				b.WriteRune(r)
			}
		}
		if b.String() == s {
			break
		}
		s = b.String()
	}
	return s
}

// optionalMark reports whether mark, after base, is one people leave out.
func optionalMark(base, mark rune) bool {
	switch {
	case unicode.In(base, unicode.Latin, unicode.Greek, unicode.Hebrew):
		return true
	case unicode.Is(unicode.Arabic, base):
		// Vowel marks, tanwin, shadda, sukun and the dagger alif, and
		// alif's hamza and madda (أحمد is typed احمد); not the hamza that
		// makes another letter (ئ is not ي).
		return mark >= '\u064B' && mark <= '\u0652' || mark == '\u0670' || base == '\u0627' && mark >= '\u0653' && mark <= '\u0655'
	case unicode.Is(unicode.Cyrillic, base):
		// The breve makes й and ў letters of their own, and the diaeresis
		// Ukrainian ї; Russian ё is written е.
		return mark != '\u0306' && (mark != '\u0308' || unicode.ToLower(base) != 'і')
	}
	return false
}

// MatchAccount finds the account of a lead: by its email domain (a
// subdomain matches its parent), else by its normalized company name. how
// says which: "domain sales.acme.example", or "company name" (the name is
// personal data, so it stays out of the decision).
func (c *Config) MatchAccount(p *eventv1.Profile) (acct *eventv1.Account, how string) {
	if d := NormalizeDomain(p.GetEmailDomain()); d != "" {
		// Up to the registrable domain: "co.uk" is no company's.
		ps, _ := publicsuffix.PublicSuffix(d)
		for try := d; try != ps && strings.Count(try, ".") >= 1; {
			if id, ok := c.domains[try]; ok {
				return c.Accounts[id], "domain " + d
			}
			_, rest, ok := strings.Cut(try, ".")
			if !ok {
				break
			}
			try = rest
		}
	}
	if n := NormalizeCompany(p.GetCompany()); n != "" {
		if id, ok := c.names[n]; ok {
			return c.Accounts[id], "company name"
		}
	}
	return nil, ""
}

// NeedsCompany reports whether a lead with profile p could match an
// account by company name only: some account has a name, and none
// matches p by email domain (which would win).
func (c *Config) NeedsCompany(p *eventv1.Profile) bool {
	if len(c.names) == 0 {
		return false
	}
	acct, how := c.MatchAccount(p)
	return acct == nil || how == "company name"
}
