package auth_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/auth"
)

// What a call pays for its token: the signature check once (uncached: a
// fresh verifier each time), then a look-up while the token is valid.
func BenchmarkVerify(b *testing.B) {
	k := key(b)
	tok, err := auth.Issue(k, reader, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	pub := k.Public().(ed25519.PublicKey)
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			v, _ := auth.NewVerifier(pub)
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		v, _ := auth.NewVerifier(pub)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
