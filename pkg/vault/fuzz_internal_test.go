package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

// FuzzSealed: what a key seals opens to the same bytes under that key and
// lead only, and any other byte string, a truncated or altered sealed value
// included, is refused as ErrCorrupt without a panic. The key id bytes are
// left alone: they pick the key, and another id finds another key (or
// none). make fuzz runs it for longer; go test runs the seeds.
func FuzzSealed(f *testing.F) {
	f.Add([]byte("ada@example.com"), uint8(0), uint16(0), uint8(1), []byte{})
	f.Add([]byte{}, uint8(1), uint16(5), uint8(0x80), []byte{formatV2, 1, 2, 3})
	f.Add([]byte("Acme GmbH"), uint8(2), uint16(30), uint8(0xff), []byte{formatV3})
	f.Add(bytes.Repeat([]byte{0}, 300), uint8(2), uint16(400), uint8(1), bytes.Repeat([]byte{formatV1}, overhead))
	f.Fuzz(func(t *testing.T, plain []byte, format uint8, pos uint16, flip uint8, junk []byte) {
		const lead = "0199aaaa-0000-7000-8000-000000000000"
		sum := sha256.Sum256(plain)
		k := &Key{leadID: lead, dek: sum}
		switch format % 3 {
		case 1:
			k.kid = hex.EncodeToString(sum[:kidSize])
		case 2:
			k.kid = blockKid([blockIDSize]byte(sum[:blockIDSize]), int(sum[9]))
		}
		aead, err := newAEAD(k.dek[:])
		if err != nil {
			t.Fatal(err)
		}
		k.aead = aead
		sealed, err := k.Seal(plain)
		if err != nil {
			t.Fatal(err)
		}
		if kid, err := sealedKeyID(sealed); err != nil || kid != k.kid {
			t.Fatalf("sealedKeyID = %q, %v; want %q", kid, err, k.kid)
		}
		if got, err := openSealed(&k.dek, lead, sealed); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("open = %q, %v; want %q", got, err, plain)
		}
		refused := func(what string, data []byte, leadID string) {
			t.Helper()
			if _, err := sealedKeyID(data); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s: sealedKeyID error %v is not ErrCorrupt", what, err)
				}
				return
			}
			if got, err := openSealed(&k.dek, leadID, data); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: opened to %q, err %v", what, got, err)
			}
		}
		refused("another lead", sealed, "0199aaaa-0000-7000-8000-000000000001")
		refused("truncated", sealed[:int(pos)%len(sealed)], lead)
		kidEnd := 1 + len(k.kid)/2
		if i := int(pos) % len(sealed); flip != 0 && (i == 0 || i >= kidEnd) {
			altered := bytes.Clone(sealed)
			altered[i] ^= flip
			refused("altered", altered, lead)
		}
		refused("junk", junk, lead)
	})
}
