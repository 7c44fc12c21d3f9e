package consume

// SetParkedListed runs f in every reload of the parked keys, between listing
// them and installing the list, until the returned func is called.
func SetParkedListed(f func()) (restore func()) {
	parkedListed.Store(&f)
	return func() { parkedListed.Store(nil) }
}
