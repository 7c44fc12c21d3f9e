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

// Company returns the company a lead's sealed Personal names; "" for an
// erased lead, whose key is gone.
func (p *Personal) Company(ctx context.Context, leadID string, sealed []byte) (string, error) {
	plain, err := p.v.Open(ctx, leadID, sealed)
	if errors.Is(err, vault.ErrShredded) || errors.Is(err, vault.ErrNoKey) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var personal eventv1.Personal
	if err := proto.Unmarshal(plain, &personal); err != nil {
		return "", fmt.Errorf("lead %s: personal data: %w", leadID, err)
	}
	return personal.GetCompany(), nil
}
