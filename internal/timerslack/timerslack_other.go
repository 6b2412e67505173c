//go:build !linux

package timerslack

import "time"

// Set does nothing outside Linux.
func Set(d time.Duration) (Result, error) { return Result{}, ErrUnsupported }
