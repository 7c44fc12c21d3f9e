package main

import (
	"testing"

	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/ports"
)

// TestAsItsNATSUser routes leads, opens sealed data with the key vault,
// writes the brief, and schedules and fires SLA timers on handoff's
// permissions only.
func TestAsItsNATSUser(t *testing.T) {
	for have, want := range map[string]string{ports.Group: natsauth.HandoffGroup, ports.TimerGroup: natsauth.HandoffTimerGroup,
		ports.RoutingGroup: natsauth.HandoffRoutingGroup, adapters.DefaultTimerStream: provision.HandoffTimers.Name} {
		if have != want {
			t.Fatalf("%q here, %q in the NATS permissions", have, want)
		}
	}
	t.Run("Routing", func(t *testing.T) { testRoutingByTerritoryPoolAndAccount(t, newWorldWithUsers) })
	t.Run("SealedCompanyName", func(t *testing.T) { testAccountBySealedCompanyName(t, newWorldWithUsers) })
	t.Run("Brief", func(t *testing.T) { testHandoffBrief(t, newWorldWithUsers) })
	t.Run("SLAEscalation", func(t *testing.T) { testSLAEscalation(t, newWorldWithUsers) })
}
