package vault

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"

	"github.com/google/uuid"
)

// lowerBase32 is RFC 4648 base32 in lower case: letters and 2-7 only, valid
// in a NATS subject token and a KV key.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Blind returns the blind index of an identity value: HMAC-SHA256 keyed with
// the BlindKey over kind, a zero byte and value, truncated to 20 bytes and
// encoded as 32 characters of lower-case base32. Equal inputs give equal
// indexes under one BlindKey; without the key an index reveals nothing of the
// value. Kind names the identity ("email", "external_id") so that equal
// values of different kinds do not collide; it must not contain a zero byte.
// Callers normalise value (trim, lower-case an email) before blinding.
func (v *Vault) Blind(kind, value string) string {
	v.mustBlind()
	mac := hmac.New(sha256.New, v.blindKey)
	mac.Write([]byte(kind))
	mac.Write([]byte{0})
	mac.Write([]byte(value))
	// 160 bits: collisions stay out of reach for any number of leads, and
	// 20 bytes encode to base32 without padding.
	return lowerBase32.EncodeToString(mac.Sum(nil)[:20])
}

// BlindID is the blind index of an identity value in the shape of a UUID
// (version 8, RFC 9562): the first 122 bits of the same HMAC as Blind,
// under a distinct kind so the two never coincide. It serves where an
// index doubles as an id, such as a lead id derived from an email, and
// as a subject token: lower-case hex and dashes only.
func (v *Vault) BlindID(kind, value string) string {
	v.mustBlind()
	mac := hmac.New(sha256.New, v.blindKey)
	mac.Write([]byte("id:" + kind))
	mac.Write([]byte{0})
	mac.Write([]byte(value))
	var b [16]byte
	copy(b[:], mac.Sum(nil))
	b[6] = b[6]&0x0f | 0x80 // version 8: custom
	b[8] = b[8]&0x3f | 0x80 // variant RFC 9562
	return uuid.UUID(b).String()
}

func (v *Vault) mustBlind() {
	if len(v.blindKey) == 0 {
		panic("vault: Blind without a BlindKey")
	}
}
