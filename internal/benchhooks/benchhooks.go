// Package benchhooks is the typed door to the benchmark- and test-only entry points of ice and session
// (internal/hooks): sessions with pre-agreed SRTP keys bound to a remote address at once,
// and raw access to the media socket. None of this authenticates the remote, which is why it is internal:
// only this module's benchmarks, tools under bench/ and tests may use it.
package benchhooks

import (
	"net/netip"
	"syscall"

	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/internal/hooks"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/session"
)

// NewKeyed is a session that skips ICE and DTLS: bound to remote on cfg.Socket at once, with SRTP contexts made
// from the given master keys and salts (local: what we send with; remote: what the peer sends with). It is
// ready for WriteRTP and HandleSRTP at once; Start must not be called.
func NewKeyed(cfg session.Config, remote netip.AddrPort, profile uint16, localKey, localSalt, remoteKey, remoteSalt []byte,
) (*session.Session, error) {
	s, err := hooks.NewKeyed(cfg, remote, profile, localKey, localSalt, remoteKey, remoteSalt)
	if err != nil {
		return nil, err
	}
	return s.(*session.Session), nil
}

// SyscallConn gives raw access to the media socket for tools that read it in their own way (benchmark bounds,
// the load tool's batched readers). Reading it while Serve runs splits the datagrams between the two readers.
func SyscallConn(sock *ice.Socket) (syscall.RawConn, error) { return hooks.SyscallConn(sock) }

// Dispatch routes one datagram that was read outside Serve exactly as Serve routes it (filter, RFC 7983 demux,
// sessions). p is lent for the call: a handler that keeps it has retained it.
func Dispatch(sock *ice.Socket, p *packet.Buffer, from netip.AddrPort) { hooks.Dispatch(sock, p, from) }
