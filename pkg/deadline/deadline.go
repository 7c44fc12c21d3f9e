// Package deadline gives I/O calls a default deadline.
package deadline

import (
	"context"
	"time"
)

// Default gives ctx a deadline d from now when the caller set none, as
// nats.go's jetstream package does for its own API calls
// (wrapContextWithoutDeadline). A deadline the caller set is kept, however
// near or far. The returned cancel is never nil; call it when done.
func Default(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
