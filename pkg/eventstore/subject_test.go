package eventstore_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// A campaign's subject carries no caller text: one UUID token, the same
// for the same id, another for another id, whatever the id holds.
func TestCampaignSubjectIsOneUUIDToken(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"webinar-q4", "webinar-q4.eu", "a.>", "*", "Webinar-Q4"} {
		subj := eventstore.CampaignSubject(id)
		tok, ok := strings.CutPrefix(subj, "campaign.")
		if !ok || strings.Contains(tok, ".") {
			t.Fatalf("%q: subject %q is not campaign.<one token>", id, subj)
		}
		if u, err := uuid.Parse(tok); err != nil || u.String() != tok {
			t.Errorf("%q: token %q is not a UUID", id, tok)
		}
		if other, dup := seen[subj]; dup {
			t.Errorf("%q and %q share subject %s", id, other, subj)
		}
		seen[subj] = id
		if again := eventstore.CampaignSubject(id); again != subj {
			t.Errorf("%q: %s then %s", id, subj, again)
		}
	}
}
