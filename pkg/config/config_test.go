package config

import (
	"strings"
	"testing"
	"time"
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

// A URL default with a password (the projector's PostgreSQL URL, from a
// pod's secret) shows in -help and a flag mistake's usage without it, and
// is still the value.
func TestURLPasswordIsNotPrinted(t *testing.T) {
	const pg = "postgres://leadflow:s3cret-pw@db:5432/leadflow"
	t.Setenv("LEADFLOW_TEST_PG", pg)
	var got, plain string
	f := New("svc")
	f.String(&got, "postgres", "LEADFLOW_TEST_PG", "", "read models")
	f.String(&plain, "nats", "LEADFLOW_TEST_NATS", "nats://127.0.0.1:4333", "NATS URL")
	var help strings.Builder
	f.SetOutput(&help)
	if err := f.Parse([]string{"-nope"}); err == nil {
		t.Fatal("an unknown flag parsed")
	}
	if out := help.String(); strings.Contains(out, "s3cret-pw") || !strings.Contains(out, "postgres://leadflow:xxxxx@db:5432/leadflow") ||
		!strings.Contains(out, "nats://127.0.0.1:4333") {
		t.Fatalf("usage:\n%s", out)
	}
	if err := f.Parse(nil); err != nil || got != pg {
		t.Fatalf("the value: %q, %v", got, err)
	}
	for in, want := range map[string]string{
		"nats://u:pw1@a:4222,nats://u:pw2@b:4222":     "nats://u:xxxxx@a:4222,nats://u:xxxxx@b:4222",
		"postgres://db/leadflow?user=u&password=pw3":  "postgres://db/leadflow?user=u&password=xxxxx",
		"host=db user=u password=pw4 dbname=leadflow": "host=db user=u password=xxxxx dbname=leadflow",
		"nats://127.0.0.1:4333":                       "nats://127.0.0.1:4333",
		"postgres://u:pa,ss@db/leadflow":              "postgres://u:xxxxx@db/leadflow",
		"host=db password='a b' dbname=x":             "host=db password=xxxxx dbname=x",
		"host=db password = p,w dbname=x":             "host=db password = xxxxx dbname=x",
	} {
		if got := Redacted(in); got != want {
			t.Errorf("Redacted(%q) = %q, want %q", in, got, want)
		}
	}
}

// A variable that does not parse stops the service (a manifest's "14d"
// must not run it on the default), unless its flag overrides it; a valid
// one is the default, padded or not.
func TestBadVariableIsRefused(t *testing.T) {
	t.Setenv("LEADFLOW_TEST_WITHIN", "14d")
	t.Setenv("LEADFLOW_TEST_REPLICAS", " 3 ")
	t.Setenv("LEADFLOW_TEST_JSON", "yes")
	define := func() (Flags, *time.Duration, *int, *bool) {
		f := New("svc")
		var d time.Duration
		var n int
		var b bool
		f.Duration(&d, "within", "LEADFLOW_TEST_WITHIN", time.Hour, "window")
		f.Int(&n, "replicas", "LEADFLOW_TEST_REPLICAS", 1, "replicas")
		f.Bool(&b, "json", "LEADFLOW_TEST_JSON", false, "json logs")
		return f, &d, &n, &b
	}
	f, _, n, _ := define()
	err := f.Parse(nil)
	if err == nil || !strings.Contains(err.Error(), `$LEADFLOW_TEST_WITHIN="14d"`) || !strings.Contains(err.Error(), "-within") ||
		!strings.Contains(err.Error(), "$LEADFLOW_TEST_JSON") || strings.Contains(err.Error(), "REPLICAS") {
		t.Fatalf("bad variables: %v; want both named, with their flags", err)
	}
	if *n != 3 {
		t.Fatalf("replicas %d from \" 3 \", want 3", *n)
	}
	f, d, _, b := define()
	if err := f.Parse([]string{"-within", "336h", "-json=true"}); err != nil || *d != 336*time.Hour || !*b {
		t.Fatalf("flags over bad variables: %v, %s, %v", err, *d, *b)
	}
	// Set but empty, as env files write an unset value: the default.
	t.Setenv("LEADFLOW_TEST_WITHIN", "")
	t.Setenv("LEADFLOW_TEST_JSON", " ")
	f, d, _, _ = define()
	if err := f.Parse(nil); err != nil || *d != time.Hour {
		t.Fatalf("empty variables: %v, %s; want the default", err, *d)
	}
}

// A listen address set empty in the environment (as env files write
// unset) is the default; given empty as a flag, it is refused, not read
// as every interface at a random port.
func TestAnEmptyListenAddressIsNotEveryInterface(t *testing.T) {
	t.Setenv("LEADFLOW_TEST_ADDR", "")
	define := func() (Flags, *string) {
		f := New("svc")
		var a string
		f.Listen(&a, "addr", "LEADFLOW_TEST_ADDR", "127.0.0.1:7101", "gRPC listen address")
		return f, &a
	}
	f, a := define()
	if err := f.Parse(nil); err != nil || *a != "127.0.0.1:7101" {
		t.Fatalf("empty variable: %q, %v; want the default", *a, err)
	}
	f, _ = define()
	if err := f.Parse([]string{"-addr", " "}); err == nil || !strings.Contains(err.Error(), "-addr") {
		t.Fatalf("empty flag: %v, want it refused, named", err)
	}
	t.Setenv("LEADFLOW_TEST_ADDR", "0.0.0.0:7101")
	f, a = define()
	if err := f.Parse(nil); err != nil || *a != "0.0.0.0:7101" {
		t.Fatalf("set variable: %q, %v", *a, err)
	}
}
