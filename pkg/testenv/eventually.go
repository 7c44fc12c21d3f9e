package testenv

import (
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it holds, and fails the test
// with the message when d passes first. An argument that is a func() any
// is called then, so the message shows the value at the failure, not at
// the call.
func Eventually(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			now := make([]any, 0, len(args)+1)
			now = append(now, d)
			for _, a := range args {
				if f, ok := a.(func() any); ok {
					a = f()
				}
				now = append(now, a)
			}
			t.Fatalf("after %v: "+format, now...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
