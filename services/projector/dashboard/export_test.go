package dashboard

// Subscribe exposes subscribe to the black-box tests.
func Subscribe(l *Live) (<-chan Notice, func()) {
	ch, _, cancel := l.subscribe()
	return ch, cancel
}
