package form

import (
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Capture is a form fill as it arrives.
type Capture struct {
	IdempotencyKey string
	Contact        *eventv1.Contact
	Profile        *eventv1.Profile
	Attribution    *eventv1.Attribution
	ExternalID     *eventv1.ExternalId
	Consents       []*eventv1.Consent
	OccurredAt     time.Time
	Actor          *eventv1.Actor
}

// Lead is a checked, normalized capture: email and phone normalized,
// country upper-cased, the email's domain and the title's job function
// copied into the profile. Its messages are copies; the input is never
// changed.
type Lead struct {
	Capture
	// Email is the normalized address, the identity to deduplicate on.
	Email string
}

// CheckCapture applies every rule to a capture and returns the normalized
// lead, or the violations (field paths as in the request, e.g.
// "contact.email").
func CheckCapture(in Capture, now time.Time) (Lead, Violations) {
	var v Violations
	c := cloneOr(in.Contact, &eventv1.Contact{})
	p := cloneOr(in.Profile, &eventv1.Profile{})
	a := cloneOr(in.Attribution, &eventv1.Attribution{})

	email, domain := Email(&v, "contact.email", c.GetEmail())
	c.Email = email
	// Spaces around a name are a form's, not the person's: a blank one is
	// none, and does not overwrite the name a lead holds.
	c.FirstName, c.LastName = trimHidden(c.GetFirstName()), trimHidden(c.GetLastName())
	p.Company, p.Title = trimHidden(p.GetCompany()), trimHidden(p.GetTitle())
	Text(&v, "contact.first_name", c.GetFirstName(), MaxName, false)
	Text(&v, "contact.last_name", c.GetLastName(), MaxName, false)
	number, extension := SplitExtension(c.GetPhone())
	c.Phone = Phone(&v, "contact.phone", number)
	c.PhoneExtension = Extension(&v, "contact.phone_extension", c.GetPhoneExtension(), extension, number)
	Text(&v, "contact.notes", c.GetNotes(), MaxNotes, true)

	Text(&v, "profile.company", p.GetCompany(), MaxCompany, false)
	Text(&v, "profile.title", p.GetTitle(), MaxTitle, false)
	Industry(&v, "profile.industry", p.GetIndustry())
	Enum(&v, "profile.seniority", int32(p.GetSeniority()), Defined(eventv1.Seniority_name), false)
	Enum(&v, "profile.job_function", int32(p.GetJobFunction()), Defined(eventv1.JobFunction_name), false)
	if p.GetJobFunction() == eventv1.JobFunction_JOB_FUNCTION_UNSPECIFIED {
		p.JobFunction = JobFunction(p.GetTitle())
	}
	if p.GetSeniority() == eventv1.Seniority_SENIORITY_UNSPECIFIED {
		p.Seniority = Seniority(p.GetTitle())
	}
	if e := p.GetEmployees(); e < 0 || e > MaxEmployees {
		v.Add("profile.employees", "must be between 0 and %d", MaxEmployees)
	}
	p.Country = Country(&v, "profile.country", p.GetCountry())
	if p.GetEmailDomain() != "" && p.GetEmailDomain() != domain {
		v.Add("profile.email_domain", "is derived from contact.email; leave it empty")
	}
	p.EmailDomain = domain

	Slug(&v, "attribution.source", a.GetSource(), true)
	ID(&v, "attribution.campaign_id", a.GetCampaignId(), false)
	Text(&v, "attribution.utm_source", a.GetUtmSource(), MaxUTM, false)
	Text(&v, "attribution.utm_medium", a.GetUtmMedium(), MaxUTM, false)
	Text(&v, "attribution.utm_campaign", a.GetUtmCampaign(), MaxUTM, false)

	ext := ExternalID(&v, "external_id", in.ExternalID)
	Consents(&v, "consents", in.Consents)
	Key(&v, "idempotency_key", in.IdempotencyKey)
	Time(&v, "occurred_at", in.OccurredAt, now)
	Actor(&v, "actor", in.Actor)

	if len(v) > 0 {
		return Lead{}, v
	}
	out := in
	out.Contact, out.Profile, out.Attribution, out.ExternalID = c, p, a, ext
	return Lead{Capture: out, Email: email}, nil
}

func cloneOr[M proto.Message](m M, empty M) M {
	if proto.Size(m) == 0 {
		return empty
	}
	return proto.Clone(m).(M)
}

// ExternalID normalizes an external id (field its path) and checks it: nil
// for none (nil, or both parts empty).
func ExternalID(v *Violations, field string, in *eventv1.ExternalId) *eventv1.ExternalId {
	if in.GetSystem() == "" && in.GetId() == "" {
		return nil
	}
	// The id as the system means it: spaces around it would make
	// another identity of "123 ", and a blank one a shared one.
	ext := &eventv1.ExternalId{System: in.GetSystem(), Id: trimHidden(in.GetId())}
	Slug(v, field+".system", ext.GetSystem(), true)
	if ext.GetId() == "" {
		v.Add(field+".id", "is required with %s.system", field)
	}
	Text(v, field+".id", ext.GetId(), MaxExternalID, false)
	// One record, one token: an invisible character would make the same
	// id another identity, so another lead (a joiner inside a word of a
	// script that writes one is the word's own).
	if i := hiddenIn(ext.GetId(), false); i >= 0 && utf8.ValidString(ext.GetId()) {
		r, _ := utf8.DecodeRuneInString(ext.GetId()[i:])
		v.Add(field+".id", "must not contain invisible characters (U+%04X at byte %d)", r, i)
	}
	return ext
}
