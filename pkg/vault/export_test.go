package vault

// HideFromDirectReads makes v's direct reads miss the subjects hide names,
// as a replica behind the stream's leader misses what it has not applied.
func HideFromDirectReads(v *Vault, hide func(subject string) bool) { v.unseen = hide }
