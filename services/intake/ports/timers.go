package ports

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/services/intake/app"
)

// Timers returns the handler of intake's fired timers.
func Timers(a *app.App, log *slog.Logger) consume.Handler {
	return func(ctx context.Context, m consume.Msg) error {
		var what wrapperspb.StringValue
		if err := proto.Unmarshal(m.Data, &what); err != nil {
			return consume.Permanent(fmt.Errorf("%s seq %d: %w", m.Subject, m.Seq, err))
		}
		switch what.GetValue() {
		case app.FinishEraseTimer:
			if err := a.FinishErase(ctx, m.Key); err != nil {
				return err
			}
			log.DebugContext(ctx, "erasure finished", "lead", m.Key)
			return nil
		case app.FinishUnmergeTimer:
			if err := a.FinishUnmerge(ctx, m.Key); err != nil {
				return err
			}
			log.DebugContext(ctx, "unmerge finished", "lead", m.Key)
			return nil
		default:
			return consume.Permanent(fmt.Errorf("%s seq %d: unknown timer %q", m.Subject, m.Seq, what.GetValue()))
		}
	}
}
