package app

import (
	"testing"

	"github.com/leadflow/leadflow/services/qualification/registry"
)

// A re-score is done once everything up to its end is acknowledged, even
// while live events past its end are in flight (under steady traffic
// there may never be a moment with none), and not before.
func TestRescoreIsDoneAtItsEnd(t *testing.T) {
	r := registry.Rescore{Started: true, Total: 100, End: 1000}
	for _, c := range []struct {
		scan Scan
		done bool
	}{
		{Scan{Pending: 5, Unacked: 3, AckFloor: 1200}, true},
		{Scan{Pending: 5, Unacked: 3, AckFloor: 1000}, true},
		{Scan{Pending: 5, Unacked: 3, AckFloor: 999}, false},
		{Scan{Pending: 0, Unacked: 1, AckFloor: 990}, false},
		{Scan{}, true},
	} {
		if _, done := progress(r, c.scan); done != c.done {
			t.Errorf("%+v: done %v, want %v", c.scan, done, c.done)
		}
	}
}
