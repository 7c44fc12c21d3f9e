package envelope

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// IsCountry reports whether code is an ISO 3166-1 alpha-2 country code,
// in capitals, as profiles carry it: rules and models that name another
// would never match a lead.
func IsCountry(code string) bool {
	return len(code) == 2 && strings.Contains(isoCountries, " "+code+" ")
}

const isoCountries = " AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW "

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

// Absorb records the profile p of a lead merged into this one (via, its
// id), under the lead's own: a field both say is the lead's. before is
// the lead's profile until now; Absorb returns it after.
func (f *Forms) Absorb(before *eventv1.Profile, via string, p *eventv1.Profile) *eventv1.Profile {
	if f.Layers == nil {
		f.Layers = []Form{{Profile: proto.CloneOf(before)}}
	}
	f.Layers = slices.Insert(f.Layers, 0, Form{Via: via, Profile: proto.CloneOf(p)})
	var profile *eventv1.Profile
	for _, l := range f.Layers {
		profile = MergeProfile(profile, l.Profile)
	}
	return profile
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
