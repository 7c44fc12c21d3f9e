package main

import (
	"testing"

	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/services/projector/ports"
)

// TestAsItsNATSUser projects live, rebuilds while events arrive, and
// replays a what-if on the projector's permissions only.
func TestAsItsNATSUser(t *testing.T) {
	if ports.LeadGroup != natsauth.ProjectorGroup || ports.ReferenceGroup != natsauth.ProjectorRefGroup {
		t.Fatalf("groups %q and %q, the NATS permissions name %q and %q", ports.LeadGroup, ports.ReferenceGroup,
			natsauth.ProjectorGroup, natsauth.ProjectorRefGroup)
	}
	t.Run("OneSetOfNumbers", func(t *testing.T) { testOneSetOfNumbers(t, newWorldWithUsers) })
	t.Run("WhatIf", func(t *testing.T) { testWhatIfOfAProposedModel(t, newWorldWithUsers) })
}
