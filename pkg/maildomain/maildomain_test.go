package maildomain_test

import (
	"slices"
	"testing"

	"github.com/leadflow/leadflow/pkg/maildomain"
)

func TestShared(t *testing.T) {
	for d, shared := range map[string]bool{
		"gmail.com": true, "web.de": true, "co.uk": true, "github.io": true,
		"acme.example": false, "acme.co.uk": false, "sales.acme.com": false, "gmail.com.evil.example": false,
	} {
		if got := maildomain.Shared(d) != ""; got != shared {
			t.Errorf("Shared(%q) = %q, want shared %v", d, maildomain.Shared(d), shared)
		}
	}
	free := maildomain.FreeMail()
	if !slices.IsSorted(free) || !slices.Contains(free, "gmail.com") || slices.Contains(free, "co.uk") {
		t.Errorf("FreeMail = %v: sorted, with gmail.com and without co.uk", free)
	}
	for _, d := range free {
		if maildomain.Shared(d) == "" {
			t.Errorf("%s is listed as free mail but not shared", d)
		}
	}
}
