package config

import (
	"strings"
	"testing"
)

// A secret comes from the environment or its flag, and -help shows neither.
func TestSecretIsNeverPrinted(t *testing.T) {
	const fromEnv, fromFlag = "env-secret-0123", "flag-secret-4567"
	t.Setenv("LEADFLOW_TEST_SECRET", fromEnv)
	var got string
	f := New("svc")
	f.Secret(&got, "secret", "LEADFLOW_TEST_SECRET", "a password")
	var help strings.Builder
	f.SetOutput(&help)
	f.PrintDefaults()
	if strings.Contains(help.String(), fromEnv) || !strings.Contains(help.String(), "$LEADFLOW_TEST_SECRET") {
		t.Fatalf("help:\n%s", help.String())
	}
	if err := f.Parse(nil); err != nil || got != fromEnv {
		t.Fatalf("from the environment: %q, %v", got, err)
	}
	if err := f.Parse([]string{"-secret", fromFlag}); err != nil || got != fromFlag {
		t.Fatalf("from the flag: %q, %v", got, err)
	}
	help.Reset()
	f.PrintDefaults()
	if strings.Contains(help.String(), fromFlag) {
		t.Fatalf("help after parsing:\n%s", help.String())
	}
}
