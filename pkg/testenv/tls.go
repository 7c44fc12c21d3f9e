package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/devcert"
)

// TLS is a throwaway CA and a certificate it signed for localhost and
// 127.0.0.1, as PEM files in a temporary folder (pkg/devcert).
type TLS struct {
	CAFile, CertFile, KeyFile string
	roots                     *x509.CertPool
}

// NewTLS makes a CA and a server certificate, removed when the test ends.
func NewTLS(t testing.TB) *TLS {
	t.Helper()
	f, err := devcert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots, err := f.Roots()
	if err != nil {
		t.Fatal(err)
	}
	return &TLS{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key, roots: roots}
}

// Server is the certificate as a server's TLS settings.
func (c *TLS) Server(t testing.TB) *tls.Config {
	t.Helper()
	cfg, err := c.Files().Server()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Client trusts the CA only.
func (c *TLS) Client() *tls.Config {
	return &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12}
}

// Dial is a gRPC dial option for a server answering with the certificate;
// on a nil TLS, for a plaintext one.
func (c *TLS) Dial() grpc.DialOption {
	if c == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(c.Client()))
}

// Files is what a service's -tls-cert, -tls-key and -nats-ca would name.
func (c *TLS) Files() config.TLS {
	return config.TLS{CertFile: c.CertFile, KeyFile: c.KeyFile, NATSCAFile: c.CAFile}
}
