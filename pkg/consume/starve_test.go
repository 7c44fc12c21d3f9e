package consume_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
)

// A member whose progress signals stop (starved of CPU) while its pulls go
// on keeps its pin, so the server's copies of what it holds expire and
// come back to it alone: it keeps its partitions, and handles every
// message once and in order. One slow handler holds the only worker
// three AckWaits long, so everything else is held past its AckWait.
func TestLateProgressKeepsThePartitions(t *testing.T) {
	n := startParts(t)
	consume.PauseProgress(true)
	t.Cleanup(func() { consume.PauseProgress(false) })
	var handBacks atomic.Int64
	cfg := config("starved")
	cfg.Workers = 1
	cfg.Logger = slog.New(&countHandler{match: "handing the partition back", n: &handBacks})
	want := publishMany(t, n.JS, 10, 5)

	var j journal
	var slow atomic.Bool
	start(t, n.JS, cfg, func(_ context.Context, m consume.Msg) error {
		j.add("m", m)
		if slow.CompareAndSwap(false, true) {
			time.Sleep(3 * cfg.AckWait)
		}
		return nil
	})
	eventually(t, 30*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d of %d", j.len(), 50)
	time.Sleep(2 * cfg.AckWait) // a copy expired and redelivered would be handled now
	if r := checkOrder(t, j.all(), want); r > 0 {
		t.Errorf("%d messages handled twice", r)
	}
	if h := handBacks.Load(); h > 0 {
		t.Errorf("%d partitions handed back while the pin held", h)
	}
}

// countHandler counts log records whose message contains match.
type countHandler struct {
	match string
	n     *atomic.Int64
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		h.n.Add(1)
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }
