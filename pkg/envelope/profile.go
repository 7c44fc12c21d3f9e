package envelope

import (
	"slices"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// MergeProfile is a lead's profile after a later form: each field the
// later one sets wins, the others keep their earlier value, since a
// webinar sign-up with only an email must not erase the company size an
// earlier form gave. Neither argument is changed.
func MergeProfile(earlier, later *eventv1.Profile) *eventv1.Profile {
	if earlier == nil {
		return proto.CloneOf(later)
	}
	out := proto.CloneOf(earlier)
	if later == nil {
		return out
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&out.Company, later.GetCompany())
	set(&out.Title, later.GetTitle())
	set(&out.Industry, later.GetIndustry())
	set(&out.Country, later.GetCountry())
	set(&out.EmailDomain, later.GetEmailDomain())
	if later.GetSeniority() != eventv1.Seniority_SENIORITY_UNSPECIFIED {
		out.Seniority = later.GetSeniority()
	}
	if later.GetJobFunction() != eventv1.JobFunction_JOB_FUNCTION_UNSPECIFIED {
		out.JobFunction = later.GetJobFunction()
	}
	if later.GetEmployees() != 0 {
		out.Employees = later.GetEmployees()
	}
	return out
}

// Forms keeps what a lead's forms said, once one came through a merged
// lead (merged_from): the unmerge that gives that lead back takes its
// forms' answers back too, and the profile is built again from the rest.
// Until then it keeps nothing, as for nearly every lead.
type Forms struct {
	Layers []Form `json:"layers,omitempty"`
}

// Form is one form's profile, and the merged lead it came through ("" for
// the lead's own). The first of Forms is the profile before the first
// form that came through a merged lead.
type Form struct {
	Via     string           `json:"via,omitempty"`
	Profile *eventv1.Profile `json:"profile,omitempty"`
}

// Add records a form's profile p, which came through via; before is the
// lead's profile until this form.
func (f *Forms) Add(before *eventv1.Profile, via string, p *eventv1.Profile) {
	if via != "" && f.Layers == nil {
		f.Layers = []Form{{Profile: proto.CloneOf(before)}}
	}
	if f.Layers != nil {
		f.Layers = append(f.Layers, Form{Via: via, Profile: proto.CloneOf(p)})
	}
}

// GiveBack drops the forms the unmerge u takes back. ok: it dropped some,
// and profile is the lead's profile from the forms left.
func (f *Forms) GiveBack(u *eventv1.LeadUnmerged) (profile *eventv1.Profile, ok bool) {
	n := len(f.Layers)
	f.Layers = slices.DeleteFunc(f.Layers, func(l Form) bool { return GivenBack(u, l.Via) })
	if len(f.Layers) == n {
		return nil, false
	}
	for _, l := range f.Layers {
		profile = MergeProfile(profile, l.Profile)
	}
	return profile, true
}
