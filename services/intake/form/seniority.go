package form

import (
	"slices"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// seniorityWords name each level by the words of a title. A title naming
// several levels takes the highest ("CTO and VP Engineering" is an
// executive). "Executive" alone is no level: an account executive is a
// seller.
var seniorityWords = []struct {
	s     eventv1.Seniority
	words []string
}{
	{eventv1.Seniority_SENIORITY_EXECUTIVE, []string{"chief", "ceo", "cto", "cfo", "cmo", "coo", "cro", "cio", "ciso", "founder", "cofounder", "president", "owner"}},
	{eventv1.Seniority_SENIORITY_VP, []string{"vp", "svp", "evp", "avp", "vice"}},
	{eventv1.Seniority_SENIORITY_DIRECTOR, []string{"director", "head"}},
	{eventv1.Seniority_SENIORITY_MANAGER, []string{"manager", "mgr", "lead", "supervisor"}},
	{eventv1.Seniority_SENIORITY_STUDENT, []string{"student", "intern", "trainee", "apprentice"}},
}

// Seniority is the level a title names: intake keeps it in the clear when
// it seals the title. INDIVIDUAL for a title that names none, UNSPECIFIED
// for no title.
func Seniority(title string) eventv1.Seniority {
	words := titleWords(title)
	if len(words) == 0 {
		return eventv1.Seniority_SENIORITY_UNSPECIFIED
	}
	for i, w := range words {
		prev := ""
		if i > 0 {
			prev = words[i-1]
		}
		switch {
		case w == "director" && prev == "managing":
			return eventv1.Seniority_SENIORITY_EXECUTIVE // the head of a company in the UK and Germany
		case w == "president" && prev == "vice", w == "owner" && (prev == "product" || prev == "process"):
			words[i] = "" // a vice president is a VP; a product owner names no level
		}
	}
	for _, sw := range seniorityWords {
		for _, w := range words {
			if slices.Contains(sw.words, w) {
				return sw.s
			}
		}
	}
	return eventv1.Seniority_SENIORITY_INDIVIDUAL
}
