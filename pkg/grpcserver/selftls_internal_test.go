package grpcserver

import (
	"crypto/tls"
	"os"
	"testing"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/devcert"
)

// The gateway's connection to its own server trusts the certificate the
// server answers with at each handshake: after a renewal it reconnects,
// and a server answering with any other certificate is refused.
func TestSelfTLSFollowsARenewal(t *testing.T) {
	dir := t.TempDir()
	files, err := devcert.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	server, err := config.TLS{CertFile: files.Cert, KeyFile: files.Key}.Server()
	if err != nil {
		t.Fatal(err)
	}
	self, err := selfTLS(server)
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(serverTLS *tls.Config) error {
		t.Helper()
		lis, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		go func() {
			if c, err := lis.Accept(); err == nil {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		c, err := tls.Dial("tcp", lis.Addr().String(), self)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := handshake(server); err != nil {
		t.Fatalf("before the renewal: %v", err)
	}
	other, err := devcert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := config.TLS{CertFile: other.Cert, KeyFile: other.Key}.Server()
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(stranger); err == nil {
		t.Fatal("a server with another certificate was trusted")
	}
	for dst, src := range map[string]string{files.Cert: other.Cert, files.Key: other.Key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := handshake(server); err != nil {
		t.Fatalf("after the renewal: %v", err)
	}
}
