package scoring

import (
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// ToProto is the event and API form of m.
func ToProto(m Model) *eventv1.ScoringModel {
	pb := &eventv1.ScoringModel{ModelId: m.ID, Version: m.Version, Description: m.Description, Threshold: int32(m.Threshold)}
	for _, r := range m.Fit {
		pb.FitRules = append(pb.FitRules, &eventv1.FitRule{Id: r.ID, Description: r.Description, Points: int32(r.Points), When: criteriaToProto(r.When)})
	}
	for _, r := range m.Engagement {
		pb.EngagementRules = append(pb.EngagementRules, &eventv1.EngagementRule{Id: r.ID, Description: r.Description,
			ActivityType: r.Activity, Points: int32(r.Points), Cap: int32(r.Cap), HalfLife: durationpb.New(r.HalfLife)})
	}
	for _, r := range m.Disqualify {
		pb.DisqualifyRules = append(pb.DisqualifyRules, &eventv1.DisqualifyRule{Id: r.ID, Description: r.Description,
			When: criteriaToProto(r.When), Reason: r.Reason, NotNow: r.NotNow})
	}
	return pb
}

// FromProto is the model pb describes; nil is the zero Model. It does not
// validate: see Validate.
func FromProto(pb *eventv1.ScoringModel) Model {
	m := Model{ID: pb.GetModelId(), Version: pb.GetVersion(), Description: pb.GetDescription(), Threshold: int(pb.GetThreshold())}
	for _, r := range pb.GetFitRules() {
		m.Fit = append(m.Fit, FitRule{ID: r.GetId(), Description: r.GetDescription(), Points: int(r.GetPoints()), When: criteriaFromProto(r.GetWhen())})
	}
	for _, r := range pb.GetEngagementRules() {
		e := EngagementRule{ID: r.GetId(), Description: r.GetDescription(), Activity: r.GetActivityType(),
			Points: int(r.GetPoints()), Cap: int(r.GetCap())}
		// A missing or malformed duration becomes 0, which Validate refuses.
		if r.GetHalfLife().IsValid() {
			e.HalfLife = r.GetHalfLife().AsDuration()
		}
		m.Engagement = append(m.Engagement, e)
	}
	for _, r := range pb.GetDisqualifyRules() {
		m.Disqualify = append(m.Disqualify, DisqualifyRule{ID: r.GetId(), Description: r.GetDescription(),
			When: criteriaFromProto(r.GetWhen()), Reason: r.GetReason(), NotNow: r.GetNotNow()})
	}
	return m
}

func criteriaToProto(c Criteria) *eventv1.Criteria {
	return &eventv1.Criteria{
		SeniorityIn: c.SeniorityIn, MinEmployees: int32(c.MinEmployees), MaxEmployees: int32(c.MaxEmployees),
		IndustryIn: c.IndustryIn, CountryIn: c.CountryIn, TitleContains: c.TitleContains, EmailDomainIn: c.EmailDomainIn,
		Required: c.Required, ConsentWithdrawn: c.ConsentWithdrawn, FunctionIn: c.FunctionIn,
	}
}

func criteriaFromProto(c *eventv1.Criteria) Criteria {
	return Criteria{
		SeniorityIn: c.GetSeniorityIn(), MinEmployees: int(c.GetMinEmployees()), MaxEmployees: int(c.GetMaxEmployees()),
		IndustryIn: c.GetIndustryIn(), CountryIn: c.GetCountryIn(), TitleContains: c.GetTitleContains(),
		EmailDomainIn: c.GetEmailDomainIn(), Required: c.GetRequired(), ConsentWithdrawn: c.GetConsentWithdrawn(), FunctionIn: c.GetFunctionIn(),
	}
}

// ProfileOf is the model's view of an event profile.
func ProfileOf(p *eventv1.Profile) Profile {
	return Profile{Company: p.GetCompany(), Title: p.GetTitle(), Seniority: p.GetSeniority(), Function: p.GetJobFunction(), Industry: p.GetIndustry(),
		Employees: int(p.GetEmployees()), Country: p.GetCountry(), EmailDomain: p.GetEmailDomain()}
}

// Merge is the profile after a later submission: each field the later
// one sets wins, the others keep their earlier value.
func Merge(earlier, later Profile) Profile {
	pick := func(a, b string) string {
		if strings.TrimSpace(b) != "" {
			return b
		}
		return a
	}
	out := Profile{Company: pick(earlier.Company, later.Company), Title: pick(earlier.Title, later.Title),
		Industry: pick(earlier.Industry, later.Industry), Country: pick(earlier.Country, later.Country),
		EmailDomain: pick(earlier.EmailDomain, later.EmailDomain), Seniority: earlier.Seniority, Employees: earlier.Employees}
	if later.Seniority != eventv1.Seniority_SENIORITY_UNSPECIFIED {
		out.Seniority = later.Seniority
	}
	out.Function = earlier.Function
	if later.Function != eventv1.JobFunction_JOB_FUNCTION_UNSPECIFIED {
		out.Function = later.Function
	}
	if later.Employees > 0 {
		out.Employees = later.Employees
	}
	return out
}

// ReasonsToProto is the LeadScored form of reasons.
func ReasonsToProto(rs []Reason) []*eventv1.ScoreReason {
	out := make([]*eventv1.ScoreReason, len(rs))
	for i, r := range rs {
		out[i] = &eventv1.ScoreReason{RuleId: r.RuleID, Part: r.Part, Points: int32(r.Points), Description: r.Description}
	}
	return out
}
