package lifecycle

// NextStep says, for people, what a lead in s waits for, after its last
// event of kind last. The no-lost-lead check and leadctl's replay both
// name missing steps with it.
func NextStep(s State, last Kind) string {
	if s.Status == StatusAssigned && s.Owner.Kind == OwnerQueue {
		// Escalated to a manager's queue, breached there or not.
		return "hand-on from the manager's queue to a rep"
	}
	if last == KindSLABreached && (s.Status == StatusAssigned || s.Status == StatusAccepted) {
		// Handoff escalates in the same append as the breach; a breach
		// left last had no one to escalate to.
		return "escalation of the SLA breach: reassignment to another rep"
	}
	switch s.Status {
	case StatusNew:
		if last == KindScored {
			return "engagement that scores over the threshold; at the deadline, recycle to nurture"
		}
		return "scoring and qualification"
	case StatusMQL:
		return "assignment to a rep"
	case StatusAssigned:
		return "acceptance by the assigned rep"
	case StatusAccepted:
		return "a contact attempt by the rep"
	case StatusOpportunity:
		return "closing the opportunity, won or lost"
	case StatusLost:
		return "recycle to nurture"
	case StatusRecycled:
		if last == KindRecycled || last == KindNurtureExited {
			return "enrolment in a nurture program"
		}
		return "recycle to nurture, then enrolment in a program"
	case StatusNurturing:
		if last == KindReengaged {
			return "re-scoring by qualification after re-engagement"
		}
		return "the program's review"
	}
	return "a next step"
}
