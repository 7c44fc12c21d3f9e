package project

// Crash points of a batch, for the kill tests.
const (
	StageRows       = int(stageRows)
	StageCheckpoint = int(stageCheckpoint)
	StageCommitted  = int(stageCommitted)
)

// SetHook makes p call f at each stage of every batch with the batch's
// events. Set it before p runs.
func SetHook(p *Projector, f func(stage int, events []Event)) {
	p.hook = func(s stage, evs []Event) { f(int(s), evs) }
}
