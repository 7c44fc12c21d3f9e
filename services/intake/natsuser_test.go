package main

import (
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/intake/adapters"
)

// startAsUser runs intake as its own NATS user (pkg/natsauth) on a server
// that takes nobody else, over TLS to NATS and from its clients, and fails
// the test if the server logged a permissions violation by the time it
// ends.
func startAsUser(t testing.TB) *env {
	t.Helper()
	n := testenv.StartNATSWithUsers(t)
	n.NoViolations(t)
	cfg := Config{Addr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		NATSUser: natsauth.Intake, NATSPassword: n.Passwords[natsauth.Intake], TLS: n.TLS.Files(),
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second}
	return startWith(t, n, cfg)
}

// TestAsItsNATSUser runs captures, the bulk import, erasure (shredding
// keys by message delete) and export with intake's permissions only.
func TestAsItsNATSUser(t *testing.T) {
	for have, want := range map[string]string{adapters.TimerGroup: natsauth.IntakeTimerGroup} {
		if have != want {
			t.Fatalf("%q here, %q in the NATS permissions", have, want)
		}
	}
	t.Run("CaptureAndReadBack", func(t *testing.T) { testCaptureAndReadBackFromTheStream(t, startAsUser) })
	t.Run("BulkImport", func(t *testing.T) { testBulkImport(t, startAsUser) })
	t.Run("EraseAndExport", func(t *testing.T) { testEraseAndExport(t, startAsUser) })
}
