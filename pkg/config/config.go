// Package config reads a service's settings from flags, with environment
// variables as defaults, so the same binary runs from `make run`, a test
// and a deployment manifest.
package config

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Flags wraps a FlagSet whose defaults come from LEADFLOW_* variables.
type Flags struct {
	*flag.FlagSet
	// bad maps flag names to the error of their variable's value: a
	// manifest's "14d" must stop the service, not run it on the default.
	bad map[string]error
	// listen holds the listen addresses, which must not end up empty.
	listen map[string]*string
}

// New returns an empty flag set for a service.
func New(name string) Flags {
	return Flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), bad: map[string]error{}, listen: map[string]*string{}}
}

// Parse parses args, then refuses a variable whose value did not parse,
// unless its flag was given.
func (f Flags) Parse(args []string) error {
	if err := f.FlagSet.Parse(args); err != nil {
		return err
	}
	f.Visit(func(fl *flag.Flag) { delete(f.bad, fl.Name) })
	var errs []error
	f.VisitAll(func(fl *flag.Flag) {
		if err := f.bad[fl.Name]; err != nil {
			errs = append(errs, err)
		}
		if p := f.listen[fl.Name]; p != nil && strings.TrimSpace(*p) == "" {
			errs = append(errs, fmt.Errorf("-%s must be a listen address such as %s: empty, it would listen on every interface at a random port", fl.Name, fl.DefValue))
		}
	})
	return errors.Join(errs...)
}

// Listen defines a listen address flag defaulting to $env, else def.
// Unlike String, a variable set but empty, as env files write unset,
// is the default, and Parse refuses an empty address: net.Listen would
// take it as every interface.
func (f Flags) Listen(p *string, name, env, def, usage string) {
	if v, ok := os.LookupEnv(env); ok && strings.TrimSpace(v) != "" {
		def = strings.TrimSpace(v)
	}
	f.StringVar(p, name, def, usage+" ($"+env+")")
	f.listen[name] = p
}

// fromEnv returns $env parsed by parse, and whether it is set; a value
// that does not parse is kept as an error for Parse.
func fromEnv[T any](f Flags, name, env string, parse func(string) (T, error)) (T, bool) {
	v, ok := os.LookupEnv(env)
	if !ok || strings.TrimSpace(v) == "" { // set but empty, as env files write unset
		var zero T
		return zero, false
	}
	x, err := parse(strings.TrimSpace(v))
	if err != nil {
		f.bad[name] = fmt.Errorf("$%s=%q is not a valid value for -%s: %w", env, v, name, err)
		return x, false
	}
	return x, true
}

// String defines a string flag defaulting to $env, else def. A default
// holding a password (a PostgreSQL or NATS URL from a pod's secret, a
// list of them, a password= parameter) shows in -help with it hidden.
func (f Flags) String(p *string, name, env, def, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	f.StringVar(p, name, def, usage+" ($"+env+")")
	f.Lookup(name).DefValue = Redacted(def)
}

var passwordParam = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]+)`)

// Redacted is s with the password of its URL and of each comma-separated
// URL in it (a password may hold a comma: the whole is tried first), and
// of each password= parameter, quoted or not, replaced by xxxxx: for help
// text, logs and errors.
func Redacted(s string) string {
	hide := func(part string) (string, bool) {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil {
			return part, false
		}
		if _, ok := u.User.Password(); !ok {
			return part, false
		}
		return strings.Replace(part, strings.TrimSpace(part), u.Redacted(), 1), true
	}
	s, _ = hide(s) // a list parses as one URL too: its first password
	parts := strings.Split(s, ",")
	for i, part := range parts {
		parts[i], _ = hide(part)
	}
	return passwordParam.ReplaceAllString(strings.Join(parts, ","), "${1}xxxxx")
}

// Secret defines a string flag defaulting to $env, else empty, whose
// value -help never prints: keys and passwords come from the environment
// of a pod or a shell, where anyone reading the help would see them.
func (f Flags) Secret(p *string, name, env, usage string) {
	*p = os.Getenv(env)
	f.Var(secret{p}, name, usage+" ($"+env+")")
}

// secret is a string flag.Value that shows nothing: flag takes a Value
// whose String is empty as unset, so no default is printed.
type secret struct{ p *string }

func (s secret) String() string     { return "" }
func (s secret) Set(v string) error { *s.p = v; return nil }

// Int defines an int flag defaulting to $env, else def.
func (f Flags) Int(p *int, name, env string, def int, usage string) {
	if n, ok := fromEnv(f, name, env, strconv.Atoi); ok {
		def = n
	}
	f.IntVar(p, name, def, usage+" ($"+env+")")
}

// Bool defines a bool flag defaulting to $env, else def.
func (f Flags) Bool(p *bool, name, env string, def bool, usage string) {
	if b, ok := fromEnv(f, name, env, strconv.ParseBool); ok {
		def = b
	}
	f.BoolVar(p, name, def, usage+" ($"+env+")")
}

// Duration defines a duration flag defaulting to $env, else def.
func (f Flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if d, ok := fromEnv(f, name, env, time.ParseDuration); ok {
		def = d
	}
	f.DurationVar(p, name, def, usage+" ($"+env+")")
}

// Float64 defines a float flag defaulting to $env, else def.
func (f Flags) Float64(p *float64, name, env string, def float64, usage string) {
	if x, ok := fromEnv(f, name, env, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }); ok {
		def = x
	}
	f.Float64Var(p, name, def, usage+" ($"+env+")")
}

// Key decodes a 32-byte key given as 64 hex characters; field names the
// setting in the error.
func Key(field, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%s must be 64 hex characters (32 bytes)", field)
	}
	return b, nil
}

// Keys decodes a comma-separated list of keys as Key does; empty: none.
func Keys(field, s string) ([][]byte, error) {
	var out [][]byte
	for i, k := range strings.Split(s, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		b, err := Key(fmt.Sprintf("%s (key %d)", field, i+1), k)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// TLS is where a service finds its TLS files: the certificate and key its
// APIs answer with (gRPC, HTTP/JSON, the dashboard), and the CA that signed
// the NATS server's certificate. Unset files mean plaintext.
type TLS struct {
	CertFile, KeyFile string
	NATSCAFile        string
}

// TLS defines -tls-cert, -tls-key and -nats-ca.
func (f Flags) TLS(t *TLS) {
	f.String(&t.CertFile, "tls-cert", "LEADFLOW_TLS_CERT", "", "PEM certificate (and chain) the APIs answer with over TLS (empty: plaintext)")
	f.String(&t.KeyFile, "tls-key", "LEADFLOW_TLS_KEY", "", "PEM private key of -tls-cert")
	f.String(&t.NATSCAFile, "nats-ca", "LEADFLOW_NATS_CA", "", "PEM CA that signed the NATS server's certificate: connect to NATS over TLS (empty: as -nats says)")
}
