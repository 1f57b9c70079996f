//go:build !linux

package ice

import "context"

// serveBatched reports false: without recvmmsg, Serve reads one datagram at a time.
func (s *Socket) serveBatched(context.Context) (bool, error) { return false, nil }
