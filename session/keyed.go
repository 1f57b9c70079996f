package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/internal/hooks"
	"github.com/rtcrelay/rtcrelay/srtp"
)

func init() {
	hooks.NewKeyed = func(cfg any, remote netip.AddrPort, profile uint16, lk, ls, rk, rs []byte) (any, error) {
		return newKeyed(cfg.(Config), remote, profile, lk, ls, rk, rs)
	}
}

// newKeyed is for benchmarks and tests only (internal/benchhooks.NewKeyed): a session that skips ICE and DTLS.
// It is bound to remote on the socket at once, without authentication, and uses SRTP contexts made from the
// given master keys and salts (local: what we send with; remote: what the peer sends with). It is ready for
// WriteRTP and HandleSRTP at once; Start must not be called. Production code uses NewAnswerer or NewOfferer.
func newKeyed(cfg Config, remote netip.AddrPort, profile uint16, localKey, localSalt, remoteKey, remoteSalt []byte,
) (*Session, error) {
	if cfg.Socket == nil {
		return nil, errors.New("session: Socket is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rtpEnc, rtcpEnc, dec, err := srtp.NewPairFromKeys(profile, localKey, localSalt, remoteKey, remoteSalt)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	s := &Session{cfg: cfg, closed: make(chan struct{}), started: true}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.dconn = newDTLSConn(s)
	s.rtcpE = rtcpEnc
	s.keys.Store(&keys{rtpEnc: rtpEnc, dec: dec})
	a, err := hooks.FixedAgent(cfg.Socket, remote, s)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	s.agent = a.(*ice.Agent)
	s.log = cfg.Logger.With("session", "keyed", "remote", remote)
	return s, nil
}
