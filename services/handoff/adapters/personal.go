package adapters

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/handoff/app"
)

var _ app.Personal = (*Personal)(nil)

// Personal opens leads' sealed personal data with the vault.
type Personal struct{ v *vault.Vault }

// NewPersonal returns the opener on v.
func NewPersonal(v *vault.Vault) *Personal { return &Personal{v: v} }

// Personal returns what a lead's sealed Personal holds; nil for an erased
// lead, whose key is gone.
func (p *Personal) Personal(ctx context.Context, leadID, via string, sealed []byte) (*eventv1.Personal, error) {
	plain, err := p.open(ctx, leadID, via, sealed)
	if plain == nil || err != nil {
		return nil, err
	}
	var personal eventv1.Personal
	if err := proto.Unmarshal(plain, &personal); err != nil {
		return nil, fmt.Errorf("lead %s: personal data: %w", leadID, err)
	}
	return &personal, nil
}

// Text returns sealed text of a lead; "" for an erased lead.
func (p *Personal) Text(ctx context.Context, leadID, via string, sealed []byte) (string, error) {
	plain, err := p.open(ctx, leadID, via, sealed)
	return string(plain), err
}

// Seal seals text with the key that sealed with; app.ErrErased once the
// lead's keys are shredded.
func (p *Personal) Seal(ctx context.Context, leadID string, with []byte, text string) ([]byte, error) {
	k, err := p.v.KeyOf(ctx, leadID, with)
	if errors.Is(err, vault.ErrShredded) {
		return nil, app.ErrErased
	}
	if err != nil {
		return nil, err
	}
	return k.Seal([]byte(text))
}

// open opens sealed with the lead's key, or via's: nil, no error, once the
// key is shredded.
func (p *Personal) open(ctx context.Context, leadID, via string, sealed []byte) ([]byte, error) {
	plain, err := p.v.OpenVia(ctx, leadID, via, sealed)
	if errors.Is(err, vault.ErrShredded) || errors.Is(err, vault.ErrNoKey) {
		return nil, nil
	}
	if plain == nil && err == nil {
		plain = []byte{}
	}
	return plain, err
}
