package routing_test

import (
	"strings"
	"testing"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// FuzzMatchAccount: an account the routing data accepts is found by its
// domain, by any subdomain of it, and by its name however it is written
// (ASCII case, punctuation, a legal form added); normalizing twice changes
// nothing. make fuzz runs it for longer; go test runs the seeds.
func FuzzMatchAccount(f *testing.F) {
	f.Add("acme.example", "Acme Corp", "sales", "Inc.")
	f.Add("WWW.Müller.de.", "Müller & Söhne GmbH", "eu", "GmbH")
	f.Add("x.co", "S.A. Industries S.A.", "a-b", "Ltd")
	f.Add("www.www.x.com", "O'Neil", "www", "llc")
	f.Fuzz(func(t *testing.T, domain, name, label, legal string) {
		for _, s := range []string{domain, name, label, legal} {
			if d := routing.NormalizeDomain(s); routing.NormalizeDomain(d) != d {
				t.Fatalf("NormalizeDomain(%q) = %q, which normalizes to %q", s, d, routing.NormalizeDomain(d))
			}
			if n := routing.NormalizeCompany(s); routing.NormalizeCompany(n) != n {
				t.Fatalf("NormalizeCompany(%q) = %q, which normalizes to %q", s, n, routing.NormalizeCompany(n))
			}
		}
		c := routing.New()
		for i, ch := range []*eventv1.RoutingChanged{
			team("t", nil), rep("owner", "t", 10), account("acct", name, "owner", domain),
		} {
			if v := c.Validate("change", ch); len(v) > 0 {
				return // data the API refuses never reaches routing
			}
			ch.Version = uint32(i + 1)
			c.Apply(uint64(i+1), ch)
		}
		match := func(p *eventv1.Profile) bool {
			acct, _ := c.MatchAccount(p)
			return acct.GetAccountId() == "acct"
		}
		// Intake lower-cases email addresses, so a lead's domain is lower case.
		d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
		if !match(&eventv1.Profile{EmailDomain: d}) {
			t.Fatalf("account domain %q: a lead at %q does not match", domain, d)
		}
		if sub := strings.ToLower(label); isLabel(sub) && !match(&eventv1.Profile{EmailDomain: sub + "." + d}) {
			t.Fatalf("account domain %q: a lead at %q does not match", domain, sub+"."+d)
		}
		variants := []string{name, swapASCIICase(name), strings.ReplaceAll(name, " ", "-")}
		if routing.NormalizeCompany("acme "+legal) == "acme" { // a legal form routing knows
			variants = append(variants, name+", "+legal, name+" "+legal+".")
		}
		for _, v := range variants {
			if !match(&eventv1.Profile{Company: v}) {
				t.Fatalf("account name %q (normalized %q): a lead at company %q (normalized %q) does not match",
					name, routing.NormalizeCompany(name), v, routing.NormalizeCompany(v))
			}
		}
	})
}

func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func swapASCIICase(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return r
	}, s)
}
