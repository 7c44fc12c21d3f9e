package scoring

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// maxFit's search is bounded by the choices it tries, pruned ones
// included, not by its calls alone: a model built so that many value
// sets survive (each rule names every country and industry but its own,
// and domains each three rules share) once cost a billion rule sums for
// one proposal. Past the bound the answer is the sum of every rule, an
// upper bound.
func TestMaxFitBoundsTheChoicesItTries(t *testing.T) {
	const n = 64
	var rules []FitRule
	for j := range n {
		var countries, industries, domains []string
		for k := range n {
			if k != j {
				countries = append(countries, fmt.Sprintf("c%d", k))
				industries = append(industries, fmt.Sprintf("i%d", k))
			}
		}
		for a := 0; a < n && len(domains) < MaxValues; a++ {
			for b := a + 1; b < n && len(domains) < MaxValues; b++ {
				if a != j && b != j {
					tri := []int{a, b, j}
					slices.Sort(tri)
					domains = append(domains, fmt.Sprintf("t%d-%d-%d.example.com", tri[0], tri[1], tri[2]))
				}
			}
		}
		rules = append(rules, FitRule{ID: fmt.Sprint("r", j), Points: 10,
			When: Criteria{MinEmployees: j + 1, CountryIn: countries, IndustryIn: industries, EmailDomainIn: domains}})
	}
	fit, summed := maxFitSearch(rules)
	// A choice sums its set once, and a full profile once more.
	if summed > 2*(maxFitSteps+1) {
		t.Errorf("the search summed %d rule sets, past twice its bound of %d choices", summed, maxFitSteps)
	}
	if fit < 30 {
		t.Errorf("fit %d, below what a profile scores (30: three rules share a domain)", fit)
	}
	p := Profile{Employees: n, Country: "c0", Industry: "i0", EmailDomain: "t0-1-2.example.com"}
	if got := Score(Model{Fit: rules}, Facts{Profile: p}, time.Time{}).Fit; got > fit {
		t.Errorf("a profile scores %d, above the bound %d", got, fit)
	}
}

// Industries and countries are matched as scoring matches them
// (strings.EqualFold): final sigma and sigma, the long s and s, are one
// value, so two rules naming them add up.
func TestMaxFitFoldsCaseAsScoringDoes(t *testing.T) {
	m := Model{Threshold: 60, Fit: []FitRule{
		{ID: "a", Points: 30, When: Criteria{IndustryIn: []string{"ΤΡΑΠΕΖΙΚΟΣ"}, CountryIn: []string{"ſe"}}},
		{ID: "b", Points: 30, When: Criteria{IndustryIn: []string{"τραπεζικος"}, CountryIn: []string{"SE"}}},
	}}
	p := Profile{Industry: "τραπεζικος", Country: "se"}
	if got := Score(m, Facts{Profile: p}, time.Time{}).Fit; got != 60 {
		t.Fatalf("the profile scores %d, want 60 (both rules)", got)
	}
	if fit, _ := MaxScore(m); fit != 60 {
		t.Errorf("MaxScore's fit %d, want 60", fit)
	}
	for _, v := range Validate(m) {
		if v.Field == "threshold" {
			t.Errorf("threshold refused: %s", v.Description)
		}
	}
}

// A domain named in Unicode by one rule and in its ASCII form by another
// is one domain, as scoring matches it: a lead there takes both rules.
func TestMaxFitTakesADomainInEitherForm(t *testing.T) {
	m := Model{Threshold: 100, Fit: []FitRule{
		{ID: "a", Points: 50, When: Criteria{EmailDomainIn: []string{"bücher.de"}}},
		{ID: "b", Points: 50, When: Criteria{EmailDomainIn: []string{"XN--BCHER-KVA.de"}}},
	}}
	if got := Score(m, Facts{Profile: Profile{EmailDomain: "shop.bücher.de"}}, time.Time{}).Fit; got != 100 {
		t.Fatalf("the profile scores %d, want 100 (both rules)", got)
	}
	if fit, _ := MaxScore(m); fit != 100 {
		t.Errorf("MaxScore's fit %d, want 100", fit)
	}
	for _, v := range Validate(m) {
		if v.Field == "threshold" {
			t.Errorf("threshold refused: %s", v.Description)
		}
	}
}
