package form_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/intake/form"
)

// fieldPaths are the request paths a capture's violations may name.
var fieldPaths = map[string]bool{
	"contact.email": true, "contact.first_name": true, "contact.last_name": true, "contact.phone": true, "contact.notes": true,
	"profile.company": true, "profile.title": true, "profile.industry": true, "profile.seniority": true,
	"profile.job_function": true, "profile.employees": true, "profile.country": true, "profile.email_domain": true,
	"attribution.source": true, "attribution.campaign_id": true, "attribution.utm_source": true,
	"attribution.utm_medium": true, "attribution.utm_campaign": true, "external_id.system": true, "external_id.id": true,
	"idempotency_key": true, "occurred_at": true,
}

// FuzzCheckCapture: a capture is either refused with violations that each
// name a request field, or accepted and normalized so that checking the
// normalized lead again accepts it unchanged (the identity intake dedupes
// on is stable), with the email's domain in the profile. make fuzz runs
// it for longer; go test runs the seeds.
func FuzzCheckCapture(f *testing.F) {
	f.Add(" Ada@Example.COM ", "0049 (151) 123-456-78", "de", "Ada", "Acme GmbH", "VP of Engineering", "web-form", "c-1", int32(250), "key-1")
	f.Add("a@b@c.com", "+1", "XX", "\x00", "", "", "", "", int32(-1), "with space")
	f.Add("\"a b\"@x.com", "+4420794609581234567", "us", strings.Repeat("x", 101), "Müller", "CTO", "Web", "", int32(10_000_001), "")
	f.Add("ß@ẞ.de", "00 1 212 555 0100", " gb ", "Zoë", "Ö", "Head of Sales", "partner.referral", "camp:2026", int32(0), "~!")
	f.Fuzz(func(t *testing.T, email, phone, country, name, company, title, source, campaign string, employees int32, key string) {
		now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
		in := form.Capture{
			IdempotencyKey: key,
			Contact:        &eventv1.Contact{Email: email, Phone: phone, FirstName: name},
			Profile:        &eventv1.Profile{Company: company, Title: title, Country: country, Employees: employees},
			Attribution:    &eventv1.Attribution{Source: source, CampaignId: campaign},
		}
		lead, v := form.CheckCapture(in, now)
		if len(v) > 0 {
			for _, x := range v {
				if !fieldPaths[x.Field] || x.Description == "" {
					t.Fatalf("violation %+v names no request field", x)
				}
			}
			return
		}
		if lead.Email == "" || lead.Email != lead.Contact.GetEmail() || lead.Email != strings.ToLower(lead.Email) {
			t.Fatalf("accepted %q as email %q (contact %q)", email, lead.Email, lead.Contact.GetEmail())
		}
		if _, domain, _ := strings.Cut(lead.Email, "@"); lead.Profile.GetEmailDomain() != domain {
			t.Fatalf("email %q, profile domain %q", lead.Email, lead.Profile.GetEmailDomain())
		}
		again, v := form.CheckCapture(lead.Capture, now)
		if len(v) > 0 {
			t.Fatalf("the normalized capture of %q is refused: %v", email, v)
		}
		if again.Email != lead.Email || !proto.Equal(again.Contact, lead.Contact) || !proto.Equal(again.Profile, lead.Profile) ||
			!proto.Equal(again.Attribution, lead.Attribution) {
			t.Fatalf("normalizing twice changed the lead:\nonce  %v %v\ntwice %v %v", lead.Contact, lead.Profile, again.Contact, again.Profile)
		}
	})
}
