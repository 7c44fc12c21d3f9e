package form

import (
	"slices"
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
	{eventv1.JobFunction_JOB_FUNCTION_MARKETING, []string{"marketing", "marketer", "growth", "demand", "brand", "leadgen", "cmo"}},
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
// letter, up to a "to" (not one naming a market): what follows names
// whom the person works for ("Executive Assistant to the CEO" is no
// executive). Two words that name something neither does alone are one
// (titlePhrases).
func titleWords(title string) []string {
	// Hyphens kept for now: a "to" inside "Go-to-Market" is no cut.
	tokens := strings.FieldsFunc(strings.ToLower(title), func(r rune) bool { return !unicode.IsLetter(r) && r != '-' })
	for i, w := range tokens {
		if w == "to" && i > 0 && (i+1 == len(tokens) || !slices.Contains(toMarkets, tokens[i+1])) {
			tokens = tokens[:i]
			break
		}
	}
	var words []string
	for _, t := range tokens {
		words = append(words, strings.FieldsFunc(t, func(r rune) bool { return r == '-' })...)
	}
	out := words[:0]
	for i := 0; i < len(words); i++ {
		if i+1 < len(words) {
			if p, ok := titlePhrases[[2]string{words[i], words[i+1]}]; ok {
				out = append(out, p)
				i++
				continue
			}
		}
		out = append(out, words[i])
	}
	return out
}

// toMarkets are the words after a "to" that names a market, not whom the
// person works for ("Go To Market", "Direct to Consumer").
var toMarkets = []string{"market", "consumer", "consumers", "business", "businesses", "customer", "customers"}

// titlePhrases: a lead generation specialist leads nobody, accounts
// payable is finance, and a business analyst or intelligence role is not
// sales.
var titlePhrases = map[[2]string]string{
	{"lead", "generation"}:       "leadgen",
	{"lead", "gen"}:              "leadgen",
	{"accounts", "payable"}:      "accounting",
	{"accounts", "receivable"}:   "accounting",
	{"business", "intelligence"}: "analytics",
	{"business", "analyst"}:      "analyst",
	{"business", "analysis"}:     "analysis",
}
