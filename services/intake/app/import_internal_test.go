package app

import (
	"fmt"
	"testing"

	"github.com/leadflow/leadflow/services/intake/form"
)

// Rows linked by an identity or an idempotency key run one after the
// other, in row order, however indirect the link: row 2 brings row 0's
// email and row 1's external id, so it must wait for both (run beside
// row 0 it could claim the email first and make row 0 a resubmission of
// another lead); rows 4 and 5 share a key, whose first use is row 4's.
func TestImportGroupsLinkedRowsInOrder(t *testing.T) {
	row := func(i int, email, ext, key string) pending {
		ids := identities{email: ClaimKey{KindEmail, email}}
		if ext != "" {
			ids.ext = ClaimKey{KindExt, ext}
		}
		return pending{i: i, l: form.Lead{Capture: form.Capture{IdempotencyKey: key}}, ids: ids}
	}
	rows := []pending{
		row(0, "a", "crm-1", ""),
		row(1, "b", "crm-2", ""),
		row(2, "a", "crm-2", ""),
		row(3, "c", "", ""),
		row(4, "d", "", "K"),
		row(5, "e", "", "K"),
		row(6, "f", "crm-1", ""),
	}
	var got [][]int
	for _, g := range linked(rows) {
		var is []int
		for _, p := range g {
			is = append(is, p.i)
		}
		got = append(got, is)
	}
	if want := [][]int{{0, 1, 2, 6}, {3}, {4, 5}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("groups %v, want %v", got, want)
	}
}
