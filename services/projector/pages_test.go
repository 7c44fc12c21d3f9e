package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// The dashboard's list of all leads pages through them: 130 leads show as
// 100 and then the other 30, each once, and back to the first page. It
// used to stop at the first page with "more leads exist".
func TestLeadListPages(t *testing.T) {
	chromium := findChromium(t)
	w := newWorld(t)
	_, base := w.startDashboard(t)
	const n = 130
	for i := range n {
		w.lead(t, fmt.Sprintf("p%03d", i), float64(i)/10, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedContact: []byte("sealed"),
			Profile: &eventv1.Profile{EmailDomain: "page.example", Country: "DE"}, Attribution: &eventv1.Attribution{Source: "web-form"}})
	}
	w.projected(t, w.dsn)

	b := newBrowser(t, chromium, base)
	b.open(t, base+"#/leads?all=1")
	rows := `[...document.querySelectorAll(".leads-panel tr[data-lead]")].map(e => e.dataset.lead)`
	first := b.eval(t, rows)
	if len(first) != 100 || b.eval(t, `[String(document.querySelector('[data-k="leads.first"]') === null)]`)[0] != "true" {
		t.Fatalf("first page: %d leads", len(first))
	}
	b.click(t, `[data-k="leads.next"]`)
	b.waitFor(t, `location.hash.includes("page=") && document.querySelectorAll(".leads-panel tr[data-lead]").length === 30`, 10*time.Second)
	second := b.eval(t, rows)
	all := slices.Sorted(slices.Values(append(slices.Clone(first), second...)))
	if len(slices.Compact(all)) != n {
		t.Fatalf("two pages hold %d distinct leads of %d", len(slices.Compact(all)), n)
	}
	if b.eval(t, `[String(document.querySelector('[data-k="leads.next"]') === null)]`)[0] != "true" {
		t.Error("the last page links to a next one")
	}
	b.click(t, `[data-k="leads.first"]`)
	b.waitFor(t, `!location.hash.includes("page=") && document.querySelectorAll(".leads-panel tr[data-lead]").length === 100`, 10*time.Second)
	b.check(t)
}

// The page's lead list names its filters as its query does, also where
// the search refuses them: to and limit, not captured.to and page_size.
func TestDashboardLeadListNamesThePagesFilters(t *testing.T) {
	w := newWorld(t)
	_, base := w.startDashboard(t)
	for query, want := range map[string]string{
		"from=2026-12-07&to=2026-12-07": `"description":"must be after from","field":"to"`,
		"limit=501":                     `"field":"limit"`,
	} {
		code, out := testenv.HTTPJSON(t, "GET", base+"api/leads?"+query, "")
		b, _ := json.Marshal(out["violations"])
		if got := string(b); code != 400 || !strings.Contains(got, want) || strings.Contains(got, "captured.") || strings.Contains(got, "page_size") {
			t.Errorf("leads?%s: %d %s, want 400 with %s", query, code, got, want)
		}
	}
}
