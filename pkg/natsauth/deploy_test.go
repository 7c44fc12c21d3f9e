package natsauth_test

import (
	"crypto/tls"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/testenv"
)

var update = flag.Bool("update", false, "rewrite deploy/k8s/nats.yaml's users from the table")

const (
	deployFile = "../../deploy/k8s/nats.yaml"
	begin      = "    # BEGIN users: generated from pkg/natsauth (go test ./pkg/natsauth -run TestDeploy -update)\n"
	end        = "    # END users\n"
)

// TestDeployHasTheTable fails when deploy/k8s/nats.yaml's users differ from
// the table; -update writes them. The server library then reads the file
// back and must find exactly the table's permissions.
func TestDeployHasTheTable(t *testing.T) {
	b, err := os.ReadFile(deployFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("%s: no %q ... %q block", deployFile, strings.TrimSpace(begin), strings.TrimSpace(end))
	}
	want := text[:i+len(begin)] + natsauth.Conf("    ") + text[j:]
	if want != text {
		if !*update {
			t.Fatalf("%s: users differ from pkg/natsauth; run go test ./pkg/natsauth -run TestDeploy -update", deployFile)
		}
		if err := os.WriteFile(deployFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The nats.conf inside the ConfigMap, as the server parses it.
	var conf []string
	in := false
	for _, l := range strings.Split(want, "\n") {
		switch {
		case strings.HasPrefix(l, "  nats.conf: |"):
			in = true
		case in && l != "" && !strings.HasPrefix(l, "    "):
			in = false
		case in:
			conf = append(conf, strings.TrimPrefix(l, "    "))
		}
	}
	// The server loads the certificates as it parses: point it at
	// throwaway ones where the pods mount Secret leadflow-tls.
	certs := testenv.NewTLS(t)
	text = strings.NewReplacer("/etc/nats-tls/tls.crt", certs.CertFile, "/etc/nats-tls/tls.key", certs.KeyFile,
		"/etc/nats-tls/ca.crt", certs.CAFile).Replace(strings.Join(conf, "\n"))
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SERVER_NAME", "nats-0")
	t.Setenv("CLUSTER_ADVERTISE", "nats-0.nats-headless:6222")
	for _, r := range natsauth.Roles() {
		t.Setenv(natsauth.PasswordEnv(r.Name), "pw-"+r.Name)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLSConfig == nil || opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("want TLS for clients and verified TLS both ways for routes: client %v, routes %+v", opts.TLSConfig != nil, opts.Cluster.TLSConfig)
	}
	if opts.Cluster.Advertise != "nats-0.nats-headless:6222" { // a name the route certificate holds
		t.Errorf("routes advertised as %q", opts.Cluster.Advertise)
	}
	if len(opts.Users) != len(natsauth.Roles()) {
		t.Fatalf("%d users in nats.conf, %d roles", len(opts.Users), len(natsauth.Roles()))
	}
	for _, u := range opts.Users {
		r, ok := natsauth.Lookup(u.Username)
		switch {
		case !ok:
			t.Errorf("user %s is no role", u.Username)
		case u.Password != "pw-"+r.Name:
			t.Errorf("%s: password not from $%s", r.Name, natsauth.PasswordEnv(r.Name))
		case !slices.Equal(u.Permissions.Publish.Allow, r.Publish) || !slices.Equal(u.Permissions.Subscribe.Allow, r.Subscribe):
			t.Errorf("%s: nats.conf allows publish %v subscribe %v, the table %v %v", r.Name,
				u.Permissions.Publish.Allow, u.Permissions.Subscribe.Allow, r.Publish, r.Subscribe)
		case u.Permissions.Publish.Deny != nil || u.Permissions.Subscribe.Deny != nil || u.Permissions.Response != nil:
			t.Errorf("%s: more than allow lists", r.Name)
		}
	}
}
