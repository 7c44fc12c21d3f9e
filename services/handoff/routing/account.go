package routing

import (
	"strings"
	"unicode"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// NormalizeDomain is a domain as accounts are matched by it: lower case,
// without surrounding space, trailing dots or leading "www."s. Trimmed
// until nothing changes, so normalizing twice changes nothing.
func NormalizeDomain(d string) string {
	d = strings.ToLower(d)
	for {
		n := strings.TrimPrefix(strings.TrimRight(strings.TrimSpace(d), "."), "www.")
		if n == d {
			return n
		}
		d = n
	}
}

// legalSuffixes are the legal forms a company name may end with; matching
// ignores them ("Acme Inc." and "ACME GmbH" are one company).
var legalSuffixes = map[string]bool{
	"inc": true, "incorporated": true, "corp": true, "corporation": true, "co": true, "company": true,
	"ltd": true, "limited": true, "llc": true, "llp": true, "lp": true, "plc": true,
	"gmbh": true, "ag": true, "kg": true, "ug": true, "se": true, "sa": true, "sas": true, "sarl": true, "sl": true,
	"srl": true, "spa": true, "bv": true, "nv": true, "oy": true, "ab": true, "as": true, "aps": true, "pty": true, "pte": true,
}

// NormalizeCompany is a company name as accounts are matched by it: lower
// case, punctuation dropped (dots and apostrophes join, "S.A." is "sa";
// anything else separates words), and legal suffixes such as Inc, GmbH,
// Ltd, LLC, SA or AG removed from the end. A name that is nothing but a
// legal form is kept as it is.
func NormalizeCompany(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r == '.' || r == '\'' || r == '’':
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		default:
			b.WriteRune(' ')
		}
	}
	words := strings.Fields(b.String())
	n := len(words)
	for n > 1 && legalSuffixes[words[n-1]] {
		n--
	}
	return strings.Join(words[:n], " ")
}

// freeMail are domains of mailbox providers: many companies' people use
// them, so no account may claim them.
var freeMail = map[string]bool{
	"gmail.com": true, "googlemail.com": true, "yahoo.com": true, "hotmail.com": true, "outlook.com": true,
	"live.com": true, "icloud.com": true, "me.com": true, "aol.com": true, "gmx.de": true, "gmx.net": true,
	"web.de": true, "proton.me": true, "protonmail.com": true, "mail.com": true, "yandex.ru": true,
}

// MatchAccount finds the account of a lead: by its email domain (a
// subdomain matches its parent), else by its normalized company name. how
// says which: "domain sales.acme.example", or "company name" (the name is
// personal data, so it stays out of the decision).
func (c *Config) MatchAccount(p *eventv1.Profile) (acct *eventv1.Account, how string) {
	if d := NormalizeDomain(p.GetEmailDomain()); d != "" {
		for try := d; strings.Count(try, ".") >= 1; {
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
