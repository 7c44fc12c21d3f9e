package main

import "testing"

// TestAsTheOperator reads timelines and state from the stream, lists,
// re-drives and skips dead letters, tails, replays the stream and revokes
// API tokens with the operator's NATS permissions only, over TLS; explain
// asks the real qualification process, itself run as its own NATS user
// and serving over TLS.
func TestAsTheOperator(t *testing.T) {
	t.Run("TimelineAndStateAsOf", func(t *testing.T) { testTimelineAndStateAsOf(t, newWorldWithUsers) })
	t.Run("DeadLetterCommands", func(t *testing.T) { testDeadLetterCommands(t, newWorldWithUsers) })
	t.Run("Tail", func(t *testing.T) { testTailFollowsNewEvents(t, newWorldWithUsers) })
	t.Run("Replay", func(t *testing.T) { testReplayFindsBrokenJourneys(t, newWorldWithUsers) })
	t.Run("TokenRevoke", func(t *testing.T) { testTokenRevoke(t, newWorldWithUsers) })
	t.Run("Explain", func(t *testing.T) { testExplainAgainstQualification(t, newWorldWithUsers) })
}
