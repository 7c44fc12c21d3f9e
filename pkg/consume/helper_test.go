package consume_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// The test stream is partitioned the way the lead stream is: the partition
// is a subject token, the key another (part.<p>.<key>).
const (
	parts      = "PARTS"
	partitions = 16
)

func subject(key string) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	return fmt.Sprintf("part.%d.%s", h.Sum32()%partitions, key)
}

func keyOf(subject string) string { return strings.SplitN(subject, ".", 3)[2] }

// config is a group on the test stream with short timeouts.
func config(group string) consume.Config {
	return consume.Config{
		Stream:     parts,
		Group:      group,
		Partitions: partitions,
		Filter:     func(p int) []string { return []string{fmt.Sprintf("part.%d.>", p)} },
		Key:        keyOf,
		AckWait:    time.Second,
		PinnedTTL:  3 * time.Second,
		Backoff:    fastBackoff,
		Logger:     quiet,
	}
}

// startParts starts an embedded JetStream with a stream shaped like the
// lead stream (file storage, no delete or purge).
func startParts(t testing.TB) *testenv.NATS {
	t.Helper()
	n := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.JS.CreateStream(ctx, jetstream.StreamConfig{
		Name:       parts,
		Subjects:   []string{"part.>"},
		Storage:    jetstream.FileStorage,
		DenyDelete: true,
		DenyPurge:  true,
	})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	return n
}

func publish(t testing.TB, js jetstream.JetStream, key, data string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, subject(key), []byte(data))
	if err != nil {
		t.Fatalf("publish %s: %v", key, err)
	}
	return ack.Sequence
}

// publishMany publishes rounds messages to each key, round-robin across
// keys, and returns each key's sequences in order.
func publishMany(t testing.TB, js jetstream.JetStream, keys, rounds int) map[string][]uint64 {
	t.Helper()
	out := map[string][]uint64{}
	var futures []jetstream.PubAckFuture
	var order []string
	for r := range rounds {
		for k := range keys {
			key := fmt.Sprintf("K%03d", k)
			f, err := js.PublishAsync(subject(key), []byte(strconv.Itoa(r)))
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
			order = append(order, key)
		}
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			out[order[i]] = append(out[order[i]], ack.Sequence)
		case err := <-f.Err():
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("publish timed out")
		}
	}
	return out
}

// quiet keeps expected dead-letter and retry logs out of the test output;
// CONSUME_TEST_LOG=1 shows them.
var quiet = func() *slog.Logger {
	if os.Getenv("CONSUME_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}()

// running is one Run in the background.
type running struct {
	cancel   context.CancelFunc
	returned chan struct{}
	err      error
}

// start runs consume.Run until stop is called or the test ends.
func start(t testing.TB, js jetstream.JetStream, cfg consume.Config, h consume.Handler) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, returned: make(chan struct{})}
	go func() {
		r.err = consume.Run(ctx, js, cfg, h)
		close(r.returned)
	}()
	t.Cleanup(func() { _ = r.stopWithin(15 * time.Second) })
	return r
}

var errStillRunning = errors.New("still running")

// stop cancels Run and returns its result; it fails the test if Run does not
// return within d.
func (r *running) stop(t testing.TB, d time.Duration) error {
	t.Helper()
	err := r.stopWithin(d)
	if errors.Is(err, errStillRunning) {
		t.Fatalf("Run did not return within %v of cancel", d)
	}
	return err
}

func (r *running) stopWithin(d time.Duration) error {
	r.cancel()
	select {
	case <-r.returned:
		return r.err
	case <-time.After(d):
		return errStillRunning
	}
}

var eventually = testenv.Eventually

func deadLetters(t testing.TB, js jetstream.JetStream) []consume.DeadLetter {
	t.Helper()
	dls, err := consume.DeadLetters(context.Background(), js, consume.DefaultDeadLetterStream)
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	return dls
}

// handling is one handler call: who handled which message.
type handling struct {
	member string
	key    string
	seq    uint64
}

// journal records handler calls in the order they happened.
type journal struct {
	mu sync.Mutex
	hs []handling
}

func (j *journal) add(member string, m consume.Msg) {
	j.mu.Lock()
	j.hs = append(j.hs, handling{member, m.Key, m.Seq})
	j.mu.Unlock()
}

func (j *journal) all() []handling {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]handling(nil), j.hs...)
}

func (j *journal) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.hs)
}

// readJournal reads the lines "member key seq" that child processes append.
func readJournal(t testing.TB, path string) []handling {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []handling
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue // a line cut short by a kill
		}
		seq, err := strconv.ParseUint(fs[2], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, handling{fs[0], fs[1], seq})
	}
	return out
}

// handledAll reports whether every message of want was handled.
func handledAll(hs []handling, want map[string][]uint64) bool {
	done := map[handling]bool{}
	for _, h := range hs {
		done[handling{key: h.key, seq: h.seq}] = true
	}
	for key, seqs := range want {
		for _, s := range seqs {
			if !done[handling{key: key, seq: s}] {
				return false
			}
		}
	}
	return true
}

// checkOrder fails the test if any message was handled before an earlier
// message of its key had been handled at least once, or if a message of
// want was never handled. It returns how many messages were handled more
// than once.
func checkOrder(t testing.TB, hs []handling, want map[string][]uint64) (repeats int) {
	t.Helper()
	done := map[string]map[uint64]bool{}
	for _, h := range hs {
		seen := done[h.key]
		if seen == nil {
			seen = map[uint64]bool{}
			done[h.key] = seen
		}
		for _, s := range want[h.key] {
			if s >= h.seq {
				break
			}
			if !seen[s] {
				var story []string
				for _, o := range hs {
					if o.key == h.key {
						story = append(story, fmt.Sprintf("%s:%d", o.member, o.seq))
					}
				}
				t.Fatalf("%s handled %s seq %d before seq %d; the key's handlings: %v", h.member, h.key, h.seq, s, story)
			}
		}
		if seen[h.seq] {
			repeats++
		}
		seen[h.seq] = true
	}
	for key, seqs := range want {
		for _, s := range seqs {
			if !done[key][s] {
				t.Fatalf("%s seq %d never handled", key, s)
			}
		}
	}
	return repeats
}

func fastBackoff(int) time.Duration { return time.Millisecond }

// members counts the live members of a group.
func members(t testing.TB, js jetstream.JetStream, group string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := consume.Members(ctx, js, consume.DefaultMembersBucket, group)
	if err != nil {
		t.Fatal(err)
	}
	return n
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
