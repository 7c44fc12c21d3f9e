package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Server is the APIs' TLS settings; nil, nil when no certificate is set.
// The pair is read again at the first handshake after either file changed
// (a renewal: cert-manager, or a Kubernetes Secret updated in place), so a
// renewed certificate is served without a restart. A pair that does not
// load (one file written, the other not yet) leaves the last good one in
// service, with a warning. The same certificate answers as a client, for
// NATS cluster routes.
func (t TLS) Server() (*tls.Config, error) {
	if t.CertFile == "" && t.KeyFile == "" {
		return nil, nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	r := &certFiles{cert: t.CertFile, key: t.KeyFile}
	if _, err := r.current(); err != nil {
		return nil, fmt.Errorf("-tls-cert, -tls-key: %w", err)
	}
	return &tls.Config{
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.current() },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.current() },
		MinVersion:           tls.VersionTLS12,
	}, nil
}

// certFiles is a certificate and key on disk, kept loaded.
type certFiles struct {
	cert, key string

	mu     sync.Mutex
	pair   *tls.Certificate
	loaded [2]fileStamp // of the pair in service
	failed [2]fileStamp // of the last pair that did not load, warned once
}

// fileStamp tells a file's versions apart without reading it.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path) // follows the symlinks a mounted Secret swaps
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// current is the pair to answer with: two stats a handshake, and a read
// when they changed.
func (c *certFiles) current() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var now [2]fileStamp
	var err error
	for i, f := range []string{c.cert, c.key} {
		if now[i], err = stamp(f); err != nil {
			break
		}
	}
	if err == nil && (now == c.loaded || now == c.failed) {
		return c.pair, nil
	}
	if err == nil {
		var pair tls.Certificate
		if pair, err = tls.LoadX509KeyPair(c.cert, c.key); err == nil {
			renewed := c.pair != nil
			c.pair, c.loaded = &pair, now
			if renewed && pair.Leaf != nil { // LoadX509KeyPair parses the leaf
				slog.Info("tls: certificate renewed", "file", c.cert, "not_after", pair.Leaf.NotAfter)
			}
			return c.pair, nil
		}
	}
	if c.pair == nil {
		return nil, err
	}
	if now != c.failed {
		c.failed = now
		slog.Warn("tls: the certificate files changed but do not load; still answering with the last good pair", "file", c.cert, "err", err)
	}
	return c.pair, nil
}
