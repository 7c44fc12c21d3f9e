package form_test

import (
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/intake/form"
)

func TestNormalization(t *testing.T) {
	cases := []struct {
		name, in, want string
		fn             func(*form.Violations, string, string) string
	}{
		{"phone with spaces", "+44 20 7946 0958", "+442079460958", form.Phone},
		{"phone with 00 prefix", "0049 (151) 123-456-78", "+4915112345678", form.Phone},
		{"phone without country", "0151 12345678", "", form.Phone},
		{"country lower case", "de", "DE", form.Country},
		{"unknown country", "XX", "", form.Country},
		{"email trimmed and lowered", "  Ada@Example.COM ", "ada@example.com", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with two ats", "a@b@c.com", "", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"phone with the trunk 0 in brackets", "+44 (0)20 7946 0958", "+442079460958", form.Phone},
		{"phone from 00 with the trunk 0", "0049 (0)151 12345678", "+4915112345678", form.Phone},
		{"email with a byte-order mark first", "\ufeffada@example.com", "ada@example.com", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a zero-width space last", "ada@example.com\u200b", "ada@example.com", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a zero-width space inside", "ada@exam\u200bple.com", "", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a no-break space inside", "ada\u00a0x@example.com", "", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a zero-width non-joiner in a Persian word", "user@ایران\u200cخودرو.ir", "user@ایران\u200cخودرو.ir", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a zero-width joiner between Latin letters", "zoe.tr\u200dial@example.org", "", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a zero-width non-joiner at a dot", "user@ایران\u200c.ir", "", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a grapheme joiner last", "zoe@example.org\u034f", "zoe@example.org", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a variation selector last", "zoe@example.org\ufe0f", "zoe@example.org", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a variation selector inside", "zo\ufe0fe@example.org", "", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with a C1 control", "ada\u0085@example.com", "", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
		{"email with 65-byte local part", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.com", "", func(v *form.Violations, f, s string) string { e, _ := form.Email(v, f, s); return e }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var v form.Violations
			got := c.fn(&v, "f", c.in)
			if got != c.want {
				t.Fatalf("%q → %q, want %q", c.in, got, c.want)
			}
			if (c.want == "") != (len(v) == 1) {
				t.Fatalf("violations %v for %q", v, c.in)
			}
		})
	}
}

// A phone written with its extension keeps it, apart: CRM exports write
// "ext. 23" after the number, and such a row was refused.
func TestPhoneExtensions(t *testing.T) {
	for _, c := range []struct {
		phone, ext       string
		wantPhone, wantX string
		bad              string
	}{
		{phone: "+1 415 555 0100 ext. 23", wantPhone: "+14155550100", wantX: "23"},
		{phone: "+1 (415) 555-0100 x23", wantPhone: "+14155550100", wantX: "23"},
		{phone: "+44 20 7946 0958 #7", wantPhone: "+442079460958", wantX: "7"},
		{phone: "+14155550100;ext=99", wantPhone: "+14155550100", wantX: "99"},
		{phone: "+1 415 555 0100, Extension 4410", wantPhone: "+14155550100", wantX: "4410"},
		{phone: "+14155550100", ext: " 23 ", wantPhone: "+14155550100", wantX: "23"},
		{phone: "+14155550100 x23", ext: "23", wantPhone: "+14155550100", wantX: "23"},
		{phone: "+14155550100 x24", ext: "23", bad: "contact.phone_extension"},
		{phone: "+14155550100", ext: "2a", bad: "contact.phone_extension"},
		{ext: "23", bad: "contact.phone_extension"},
		{phone: "+1 415 555 0100 ext. ", bad: "contact.phone"},
		{phone: "+1 415 555 0127 ext. 12345678901", bad: "contact.phone_extension"},
	} {
		in := form.Capture{Contact: &eventv1.Contact{Email: "a@b.com", Phone: c.phone, PhoneExtension: c.ext}, Attribution: &eventv1.Attribution{Source: "web-form"}}
		l, v := form.CheckCapture(in, time.Now())
		if c.bad != "" {
			if len(v) != 1 || v[0].Field != c.bad {
				t.Errorf("%q ext %q: violations %v, want one on %s", c.phone, c.ext, v, c.bad)
			}
			continue
		}
		if len(v) > 0 || l.Contact.GetPhone() != c.wantPhone || l.Contact.GetPhoneExtension() != c.wantX {
			t.Errorf("%q ext %q: %q ext %q (%v), want %q ext %q", c.phone, c.ext, l.Contact.GetPhone(), l.Contact.GetPhoneExtension(), v, c.wantPhone, c.wantX)
		}
	}
}

func TestCheckCaptureDoesNotChangeItsInput(t *testing.T) {
	in := form.Capture{
		Contact:     &eventv1.Contact{Email: " A@B.com", Phone: "0044 20 7946 0958"},
		Profile:     &eventv1.Profile{Country: "gb"},
		Attribution: &eventv1.Attribution{Source: "web-form"},
	}
	l, v := form.CheckCapture(in, time.Now())
	if len(v) > 0 {
		t.Fatal(v)
	}
	if l.Email != "a@b.com" || l.Contact.GetPhone() != "+442079460958" || l.Profile.GetCountry() != "GB" || l.Profile.GetEmailDomain() != "b.com" {
		t.Fatalf("normalized: %v %v", l.Contact, l.Profile)
	}
	if in.Contact.GetEmail() != " A@B.com" || in.Profile.GetCountry() != "gb" {
		t.Fatal("CheckCapture changed the caller's messages")
	}
	// An external id is the id without spaces around it, and a blank one
	// is none: it would be one identity of many people.
	ext := func(id string) form.Capture {
		c := in
		c.ExternalID = &eventv1.ExternalId{System: "hubspot", Id: id}
		return c
	}
	if l, v := form.CheckCapture(ext(" 123 "), time.Now()); len(v) > 0 || l.ExternalID.GetId() != "123" {
		t.Fatalf("padded external id: %v %v", l.ExternalID, v)
	}
	if _, v := form.CheckCapture(ext("   "), time.Now()); len(v) != 1 || v[0].Field != "external_id.id" {
		t.Fatalf("blank external id: violations %v", v)
	}
	// Names, company and title are trimmed too: a blank one is none.
	padded := in
	padded.Contact = &eventv1.Contact{Email: "a@b.com", FirstName: "   ", LastName: "  Park\u200b "}
	padded.Profile = &eventv1.Profile{Company: " Acme Inc ", Title: "\ufeffCTO"}
	if l, v := form.CheckCapture(padded, time.Now()); len(v) > 0 || l.Contact.GetFirstName() != "" || l.Contact.GetLastName() != "Park" ||
		l.Profile.GetCompany() != "Acme Inc" || l.Profile.GetTitle() != "CTO" {
		t.Errorf("padded names: %v %v %v", l.Contact, l.Profile, v)
	}
	// ... nor the invisible characters a CSV export leaves at its ends
	// (one record would be two identities); one inside is refused.
	for _, id := range []string{"\ufeff0015g00000ABC", "0015g00000ABC\u200b", "\u2060 0015g00000ABC"} {
		if l, v := form.CheckCapture(ext(id), time.Now()); len(v) > 0 || l.ExternalID.GetId() != "0015g00000ABC" {
			t.Errorf("external id %+q: %v %v, want 0015g00000ABC", id, l.ExternalID, v)
		}
	}
	if _, v := form.CheckCapture(ext("0015g\u200b00000ABC"), time.Now()); len(v) != 1 || v[0].Field != "external_id.id" || !strings.Contains(v[0].Description, "U+200B") {
		t.Errorf("an invisible character inside an external id: violations %v", v)
	}
	// A joiner inside a word of a script that writes one is the word's,
	// as in an email; so are spaces inside an id.
	for _, id := range []string{"شرکت\u200cنوین-42", "मेरी\u200dकंपनी-7", "acct 42"} {
		if l, v := form.CheckCapture(ext(id), time.Now()); len(v) > 0 || l.ExternalID.GetId() != id {
			t.Errorf("external id %+q: %v %v, want it kept", id, l.ExternalID, v)
		}
	}
	// A nil profile and attribution are refused for the source, not a panic.
	_, v = form.CheckCapture(form.Capture{Contact: &eventv1.Contact{Email: "a@b.com"}}, time.Now())
	if len(v) != 1 || v[0].Field != "attribution.source" {
		t.Fatalf("violations %v", v)
	}
}

// The title is sealed at capture; its job function stays in the clear for
// scoring and routing, unless the caller set one.
func TestJobFunctionOfTheTitle(t *testing.T) {
	for title, want := range map[string]eventv1.JobFunction{
		"Head of Revenue Operations":              eventv1.JobFunction_JOB_FUNCTION_OPERATIONS,
		"Marketing Ops Lead":                      eventv1.JobFunction_JOB_FUNCTION_OPERATIONS,
		"VP, Demand-Generation":                   eventv1.JobFunction_JOB_FUNCTION_MARKETING,
		"Senior Account Executive":                eventv1.JobFunction_JOB_FUNCTION_SALES,
		"Accounting Manager":                      eventv1.JobFunction_JOB_FUNCTION_FINANCE,
		"DevOps Engineer":                         eventv1.JobFunction_JOB_FUNCTION_ENGINEERING,
		"Digital Producer":                        eventv1.JobFunction_JOB_FUNCTION_OTHER, // no "it" or "product" inside words
		"Accounts Payable Specialist":             eventv1.JobFunction_JOB_FUNCTION_FINANCE,
		"Business Intelligence Analyst":           eventv1.JobFunction_JOB_FUNCTION_OTHER,
		"Business Analyst":                        eventv1.JobFunction_JOB_FUNCTION_OTHER,
		"Business Development Rep":                eventv1.JobFunction_JOB_FUNCTION_SALES,
		"Lead Generation Specialist":              eventv1.JobFunction_JOB_FUNCTION_MARKETING,
		"Executive Assistant to the CTO":          eventv1.JobFunction_JOB_FUNCTION_OTHER,
		"Director, Go-To-Market Operations":       eventv1.JobFunction_JOB_FUNCTION_OPERATIONS,
		"Business-to-Business Marketing Director": eventv1.JobFunction_JOB_FUNCTION_MARKETING,
		"  ": eventv1.JobFunction_JOB_FUNCTION_UNSPECIFIED,
	} {
		if got := form.JobFunction(title); got != want {
			t.Errorf("%q: %v, want %v", title, got, want)
		}
	}
	base := form.Capture{Contact: &eventv1.Contact{Email: "ada@example.com"}, Attribution: &eventv1.Attribution{Source: "web-form"}}
	for _, c := range []struct {
		given, want eventv1.JobFunction
	}{
		{eventv1.JobFunction_JOB_FUNCTION_UNSPECIFIED, eventv1.JobFunction_JOB_FUNCTION_MARKETING},
		{eventv1.JobFunction_JOB_FUNCTION_FINANCE, eventv1.JobFunction_JOB_FUNCTION_FINANCE},
	} {
		in := base
		in.Profile = &eventv1.Profile{Title: "Growth Marketer", JobFunction: c.given}
		l, v := form.CheckCapture(in, time.Now())
		if len(v) > 0 || l.Profile.GetJobFunction() != c.want {
			t.Errorf("given %v: %v (%v), want %v", c.given, l.Profile.GetJobFunction(), v, c.want)
		}
	}
	in := base
	in.Profile = &eventv1.Profile{JobFunction: 42}
	if _, v := form.CheckCapture(in, time.Now()); len(v) != 1 || v[0].Field != "profile.job_function" {
		t.Errorf("an unknown job function: %v", v)
	}
}

// Forms ask for a title, seldom for a level: the level a title names stays
// in the clear for scoring and routing, unless the caller set one.
func TestSeniorityOfTheTitle(t *testing.T) {
	for title, want := range map[string]eventv1.Seniority{
		"VP Engineering":                       eventv1.Seniority_SENIORITY_VP,
		"Vice-President, Sales":                eventv1.Seniority_SENIORITY_VP,
		"Executive Vice President":             eventv1.Seniority_SENIORITY_VP,
		"President":                            eventv1.Seniority_SENIORITY_EXECUTIVE,
		"CTO & VP of Engineering":              eventv1.Seniority_SENIORITY_EXECUTIVE, // the highest level named
		"Co-Founder":                           eventv1.Seniority_SENIORITY_EXECUTIVE,
		"Managing Director":                    eventv1.Seniority_SENIORITY_EXECUTIVE,
		"Director of Platform":                 eventv1.Seniority_SENIORITY_DIRECTOR,
		"Head of Demand Gen":                   eventv1.Seniority_SENIORITY_DIRECTOR,
		"Director of Student Affairs":          eventv1.Seniority_SENIORITY_DIRECTOR,
		"Engineering Manager":                  eventv1.Seniority_SENIORITY_MANAGER,
		"Marketing Ops Lead":                   eventv1.Seniority_SENIORITY_MANAGER,
		"Lead Generation Specialist":           eventv1.Seniority_SENIORITY_INDIVIDUAL,
		"Lead Gen Manager":                     eventv1.Seniority_SENIORITY_MANAGER,
		"Executive Assistant to the CEO":       eventv1.Seniority_SENIORITY_INDIVIDUAL,
		"Chief of Staff to the CEO":            eventv1.Seniority_SENIORITY_EXECUTIVE,
		"Tech Lead":                            eventv1.Seniority_SENIORITY_MANAGER,
		"Go-to-Market Director":                eventv1.Seniority_SENIORITY_DIRECTOR,
		"Go To Market Director":                eventv1.Seniority_SENIORITY_DIRECTOR,
		"Executive Assistant (to the CEO)":     eventv1.Seniority_SENIORITY_INDIVIDUAL,
		"Direct to Consumer Marketing Manager": eventv1.Seniority_SENIORITY_MANAGER,
		"Senior Account Executive":             eventv1.Seniority_SENIORITY_INDIVIDUAL, // a seller, not an executive
		"Product Owner":                        eventv1.Seniority_SENIORITY_INDIVIDUAL,
		"Research Engineer":                    eventv1.Seniority_SENIORITY_INDIVIDUAL,
		"Marketing Intern":                     eventv1.Seniority_SENIORITY_STUDENT,
		"PhD Student":                          eventv1.Seniority_SENIORITY_STUDENT,
		"":                                     eventv1.Seniority_SENIORITY_UNSPECIFIED,
		"  -- ":                                eventv1.Seniority_SENIORITY_UNSPECIFIED,
	} {
		if got := form.Seniority(title); got != want {
			t.Errorf("%q: %v, want %v", title, got, want)
		}
	}
	base := form.Capture{Contact: &eventv1.Contact{Email: "ada@example.com"}, Attribution: &eventv1.Attribution{Source: "web-form"}}
	for _, c := range []struct {
		title       string
		given, want eventv1.Seniority
	}{
		{"VP Engineering", eventv1.Seniority_SENIORITY_UNSPECIFIED, eventv1.Seniority_SENIORITY_VP},
		{"VP Engineering", eventv1.Seniority_SENIORITY_DIRECTOR, eventv1.Seniority_SENIORITY_DIRECTOR},
		{"", eventv1.Seniority_SENIORITY_UNSPECIFIED, eventv1.Seniority_SENIORITY_UNSPECIFIED},
	} {
		in := base
		in.Profile = &eventv1.Profile{Title: c.title, Seniority: c.given}
		l, v := form.CheckCapture(in, time.Now())
		if len(v) > 0 || l.Profile.GetSeniority() != c.want {
			t.Errorf("%q given %v: %v (%v), want %v", c.title, c.given, l.Profile.GetSeniority(), v, c.want)
		}
		if in.Profile.GetSeniority() != c.given {
			t.Errorf("%q: the caller's profile was changed", c.title)
		}
	}
}

// An amount is refused below zero and past what the read model can sum
// a thousand of in 64 bits, naming minor_units; the bound itself passes.
func TestMoneyBounds(t *testing.T) {
	for _, c := range []struct {
		units int64
		ok    bool
	}{{0, true}, {envelope.MaxMinorUnits, true}, {-1, false}, {envelope.MaxMinorUnits + 1, false}, {1 << 62, false}} {
		var v form.Violations
		form.Money(&v, "cost", &eventv1.Money{Currency: "EUR", MinorUnits: c.units}, true)
		if ok := len(v) == 0; ok != c.ok || (!ok && v[0].Field != "cost.minor_units") {
			t.Errorf("%d: violations %v, want ok %v", c.units, v, c.ok)
		}
	}
}

// An industry stays in the clear after the lead's erasure: one that
// carries an email address or a phone-length number is refused, naming
// the field; industries with codes of up to six digits, or none, pass.
func TestIndustryNamesNoPerson(t *testing.T) {
	for industry, ok := range map[string]bool{
		"Software": true, "Financial Services": true, "Web 3.0": true, "B2B SaaS": true, "Health Care & Life Sciences": true,
		"NAICS 541511": true, "SIC 7372 / 7371": true, "ISO 9001 & 14001 manufacturing": true,
		"jane.doe@victim.example": false, "Jane Doe, 12 Hidden Lane, +4915112345678": false, "call 555 123 4567": false, "555-1234": false,
	} {
		_, v := form.CheckCapture(form.Capture{Contact: &eventv1.Contact{Email: "a@example.com"}, Profile: &eventv1.Profile{Industry: industry},
			Attribution: &eventv1.Attribution{Source: "web-form"}}, time.Now())
		if got := len(v) == 0; got != ok || (!ok && v[0].Field != "profile.industry") {
			t.Errorf("industry %q: violations %v, want ok %v", industry, v, ok)
		}
	}
}
