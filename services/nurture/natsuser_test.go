package main

import (
	"testing"

	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
)

// TestAsItsNATSUser recycles and enrols leads, fires review timers, and
// runs the no-lost-lead check (every group's progress, members and dead
// letters) on nurture's permissions only.
func TestAsItsNATSUser(t *testing.T) {
	for have, want := range map[string]string{app.Group: natsauth.NurtureGroup, app.TimerGroup: natsauth.NurtureTimerGroup,
		adapters.DefaultTimerStream: provision.NurtureTimers.Name} {
		if have != want {
			t.Fatalf("%q here, %q in the NATS permissions", have, want)
		}
	}
	t.Run("EveryRecyclePath", func(t *testing.T) { testEveryRecyclePath(t, newWorldWithUsers) })
	t.Run("ReengagementAndProgramEnd", func(t *testing.T) { testReengagementAndProgramEnd(t, newWorldWithUsers) })
	t.Run("LostLeadCheck", func(t *testing.T) { testLostLeadCheckFindsExactlyTheBrokenLeads(t, newWorldWithUsers) })
}
