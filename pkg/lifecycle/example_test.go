package lifecycle_test

import (
	"fmt"
	"time"

	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// A service loads a lead's state, decides, records the events (not shown)
// and applies them to get the new state.
func Example() {
	p := lifecycle.DefaultPolicy()
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	ann := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}

	var s lifecycle.State
	for _, c := range []lifecycle.Command{
		{Name: lifecycle.Capture},
		{Name: lifecycle.Qualify},
		{Name: lifecycle.Accept},
		{Name: lifecycle.Assign, Owner: ann},
		{Name: lifecycle.Accept},
	} {
		events, err := lifecycle.Decide(s, c, p, now)
		if err != nil {
			fmt.Println(err)
			continue
		}
		s = lifecycle.Fold(s, events...)
		fmt.Printf("%s: %s, owner %s, due %s\n", events[0].Kind, s.Status, s.Owner, s.Deadline.Format(time.DateTime))
		now = now.Add(10 * time.Minute)
	}
	// Output:
	// LeadCaptured: NEW, owner queue qualification, due 2026-03-02 10:00:00
	// LeadQualified: MQL, owner queue routing, due 2026-03-02 13:10:00
	// Accept refused in MQL: lead is not assigned
	// LeadAssigned: ASSIGNED, owner rep ann, due 2026-03-03 09:20:00
	// LeadAccepted: ACCEPTED, owner rep ann, due 2026-03-04 09:30:00
}
