package form

import (
	"strings"
	"unicode"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// functionWords name each job function by the words of a title, checked
// in this order: "Marketing Operations" is operations, a buying role
// either way.
var functionWords = []struct {
	f     eventv1.JobFunction
	words []string
}{
	{eventv1.JobFunction_JOB_FUNCTION_OPERATIONS, []string{"operations", "ops", "revops", "revenue"}},
	{eventv1.JobFunction_JOB_FUNCTION_MARKETING, []string{"marketing", "marketer", "growth", "demand", "brand", "cmo"}},
	{eventv1.JobFunction_JOB_FUNCTION_SALES, []string{"sales", "account", "accounts", "business", "bdr", "sdr", "cro"}},
	{eventv1.JobFunction_JOB_FUNCTION_ENGINEERING, []string{"engineering", "engineer", "developer", "software", "devops", "it", "technology", "cto"}},
	{eventv1.JobFunction_JOB_FUNCTION_FINANCE, []string{"finance", "financial", "accounting", "accountant", "controller", "cfo"}},
	{eventv1.JobFunction_JOB_FUNCTION_PRODUCT, []string{"product"}},
	{eventv1.JobFunction_JOB_FUNCTION_PEOPLE, []string{"hr", "people", "talent", "recruiting", "recruiter"}},
}

// JobFunction is the coarse department a title names: intake keeps it in
// the clear when it seals the title. OTHER for a title that names none,
// UNSPECIFIED for no title.
func JobFunction(title string) eventv1.JobFunction {
	words := titleWords(title)
	if len(words) == 0 {
		return eventv1.JobFunction_JOB_FUNCTION_UNSPECIFIED
	}
	for _, fw := range functionWords {
		for _, w := range words {
			for _, k := range fw.words {
				if w == k {
					return fw.f
				}
			}
		}
	}
	return eventv1.JobFunction_JOB_FUNCTION_OTHER
}

// titleWords are a title's words, lower case, split at anything but a
// letter.
func titleWords(title string) []string {
	return strings.FieldsFunc(strings.ToLower(title), func(r rune) bool { return !unicode.IsLetter(r) })
}
