package scoring

import (
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

const day = 24 * time.Hour

// Default is the model `make run` proposes and signs off for the demo. A VP
// at a 200-person company who attended a webinar and visited the pricing
// page scores 25 + 20 + 15 + 10 = 70 and crosses the threshold; without the
// pricing visit they do not, even from a target country (65).
func Default() Model {
	return Model{
		ID:          ID,
		Description: "Demo model: decision makers at mid-market and enterprise companies who engage with webinars, pricing and demos.",
		Threshold:   70,
		Fit: []FitRule{
			{ID: "decision-maker", Description: "VP or executive", Points: 25,
				When: Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP, eventv1.Seniority_SENIORITY_EXECUTIVE}}},
			{ID: "director", Description: "Director", Points: 15,
				When: Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_DIRECTOR}}},
			{ID: "manager", Description: "Manager", Points: 5,
				When: Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_MANAGER}}},
			{ID: "mid-market", Description: "50 to 5,000 employees", Points: 20,
				When: Criteria{MinEmployees: 50, MaxEmployees: 5000}},
			{ID: "enterprise", Description: "More than 5,000 employees", Points: 15,
				When: Criteria{MinEmployees: 5001}},
			{ID: "target-country", Description: "In a country sales covers", Points: 5,
				When: Criteria{CountryIn: []string{"US", "CA", "GB", "IE", "DE", "FR", "NL", "SE", "DK", "FI"}}},
			{ID: "buyer-function", Description: "Works in a buying function: marketing, sales or operations", Points: 5,
				When: Criteria{FunctionIn: []eventv1.JobFunction{eventv1.JobFunction_JOB_FUNCTION_MARKETING,
					eventv1.JobFunction_JOB_FUNCTION_SALES, eventv1.JobFunction_JOB_FUNCTION_OPERATIONS}}},
			{ID: "free-mail", Description: "Personal email address", Points: -10,
				When: Criteria{EmailDomainIn: []string{"gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "gmx.de", "web.de"}}},
		},
		Engagement: []EngagementRule{
			{ID: "demo-request", Description: "Requested a demo", Activity: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST,
				Points: 40, Cap: 40, HalfLife: 30 * day},
			{ID: "webinar-attended", Description: "Attended a webinar", Activity: eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED,
				Points: 15, Cap: 30, HalfLife: 30 * day},
			{ID: "event-attended", Description: "Attended an event", Activity: eventv1.ActivityType_ACTIVITY_TYPE_EVENT_ATTENDED,
				Points: 15, Cap: 30, HalfLife: 60 * day},
			{ID: "pricing-visit", Description: "Visited the pricing page", Activity: eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT,
				Points: 10, Cap: 20, HalfLife: 14 * day},
			{ID: "content-download", Description: "Downloaded content", Activity: eventv1.ActivityType_ACTIVITY_TYPE_CONTENT_DOWNLOAD,
				Points: 8, Cap: 24, HalfLife: 30 * day},
			{ID: "webinar-registered", Description: "Registered for a webinar", Activity: eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_REGISTERED,
				Points: 5, Cap: 10, HalfLife: 30 * day},
			{ID: "email-click", Description: "Clicked an email", Activity: eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK,
				Points: 3, Cap: 12, HalfLife: 14 * day},
			{ID: "web-visit", Description: "Visited the website", Activity: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT,
				Points: 1, Cap: 10, HalfLife: 7 * day},
			{ID: "unsubscribed", Description: "Unsubscribed", Activity: eventv1.ActivityType_ACTIVITY_TYPE_UNSUBSCRIBE,
				Points: -20, Cap: 20, HalfLife: 90 * day},
		},
		Disqualify: []DisqualifyRule{
			{ID: "competitor", Description: "Works for a competitor", Reason: "works for a competitor",
				When: Criteria{EmailDomainIn: []string{"rival.example", "competitor.example"}}},
			{ID: "bad-domain", Description: "Disposable or invalid email domain", Reason: "disposable or invalid email domain",
				When: Criteria{EmailDomainIn: []string{"mailinator.com", "guerrillamail.com", "10minutemail.com", "example.invalid"}}},
			{ID: "email-consent-withdrawn", Description: "Withdrew email consent", Reason: "withdrew email consent: marketing cannot reach them",
				When: Criteria{ConsentWithdrawn: []eventv1.ConsentChannel{eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL}}},
			{ID: "student", Description: "Student: not a buyer yet", Reason: "student, not a buyer yet", NotNow: true,
				When: Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_STUDENT}}},
		},
	}
}
