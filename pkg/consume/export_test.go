package consume

// PauseProgress stops (true) or resumes progress signals, to play a member
// starved of CPU whose pulls still reach the server.
func PauseProgress(paused bool) { progressPaused.Store(paused) }

// PinGroup is the priority group every partition durable pins.
const PinGroup = pinGroup
