// Package hooks holds the benchmark- and test-only entry points of ice and session, which those packages set in
// an init function. They are deliberately not part of any exported API: FixedAgent and NewKeyed bind a remote
// address to a session without authentication (no ICE check, no DTLS), SyscallConn and Dispatch reach around
// the socket's own reader. The values are untyped here because ice and session import this package; use them
// through the typed wrappers of internal/benchhooks.
package hooks

import (
	"net/netip"
	"syscall"

	"github.com/rtcrelay/rtcrelay/packet"
)

var (
	// FixedAgent is ice's newFixedAgent: sock is an *ice.Socket, ep an ice.Endpoint, the result an *ice.Agent.
	FixedAgent func(sock any, remote netip.AddrPort, ep any) (any, error)
	// SyscallConn is the raw socket of an *ice.Socket.
	SyscallConn func(sock any) (syscall.RawConn, error)
	// Dispatch routes one datagram read outside Serve as Serve would; sock is an *ice.Socket.
	Dispatch func(sock any, p *packet.Buffer, from netip.AddrPort)
	// NewKeyed is session's newKeyed: cfg is a session.Config, the result a *session.Session.
	NewKeyed func(cfg any, remote netip.AddrPort, profile uint16, localKey, localSalt, remoteKey, remoteSalt []byte) (any, error)
)
