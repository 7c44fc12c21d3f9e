package consume

import "errors"

// permanentError marks an error that retrying will not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: Run dead-letters the message at
// once instead of after Config.Attempts tries. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps, was marked by
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// awayError marks an error of a store the handler needs that is out of
// reach: not the message's fault.
type awayError struct{ err error }

func (e *awayError) Error() string { return e.err.Error() }
func (e *awayError) Unwrap() error { return e.err }

// Away marks err as a store the handler writes to being out of reach (a
// database restarting, refusing connections): Run waits for it, as it
// waits for JetStream, without using up the message's attempts, so an
// outage dead-letters nothing. Mark only what cannot be the message's
// doing. Away(nil) is nil.
func Away(err error) error {
	if err == nil {
		return nil
	}
	return &awayError{err: err}
}

// IsAway reports whether err, or any error it wraps, was marked by Away.
func IsAway(err error) bool {
	var a *awayError
	return errors.As(err, &a)
}
