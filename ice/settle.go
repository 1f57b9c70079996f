package ice

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
)

// settled is the state of a lite agent whose connectivity checks the socket answers itself (Settle).
type settled struct {
	username string // "<our ufrag>:<the peer's ufrag>", the USERNAME of the peer's checks
	timeout  time.Duration
	consent  *time.Timer // fails the agent when no valid check arrived for timeout
	answered atomic.Uint64
}

// Settle hands a connected ICE-lite agent's remaining work over from its pion agent to the socket and closes the
// pion agent, which frees its goroutines (task loop, connectivity-check ticker, candidate reader) and their
// buffers: about 20 kB of heap and as much stack per session. A lite agent never sends checks; once a pair is
// selected it only answers the peer's consent checks (RFC 7675, a few seconds apart) and fails when they stop.
// After Settle the socket's reader does exactly that: it answers every binding request that carries our USERNAME
// and verifies with our password (MESSAGE-INTEGRITY, FINGERPRINT when present), binds the address it came from
// as pion did, follows a nomination (USE-CANDIDATE) to a new address, and fails the agent (Done, ErrFailed) when
// no valid check arrived within the disconnected plus the failed timeout.
//
// It reports whether the agent settled: only a connected, open lite agent does; others keep their pion agent.
func (a *Agent) Settle() bool {
	if !a.cfg.Lite {
		return false
	}
	select {
	case <-a.connected:
	default:
		return false
	}
	a.mu.Lock()
	if a.isClosed || a.settle.Load() != nil || a.pion == nil {
		a.mu.Unlock()
		return false
	}
	disconnected, failed := liteDisconnectedTimeout, failedTimeout
	if a.cfg.DisconnectedTimeout > 0 {
		disconnected = a.cfg.DisconnectedTimeout
	}
	if a.cfg.FailedTimeout > 0 {
		failed = a.cfg.FailedTimeout
	}
	st := &settled{username: a.ufrag + ":" + a.cfg.RemoteUfrag, timeout: disconnected + failed}
	st.consent = time.AfterFunc(st.timeout, func() { a.finish(ErrFailed) })
	a.settle.Store(st)
	pa := a.pion
	a.mu.Unlock()

	// pion reports Closed to onState, which ignores it now that settle is set; the candidate's reader ends with
	// the agent conn, which the socket no longer needs for this agent.
	if err := pa.Close(); err != nil {
		a.log.Debug("closing the settled pion agent", "err", err)
	}
	a.mu.Lock()
	a.pion = nil // let its candidates, pairs and buffers go
	a.mu.Unlock()
	a.log.Debug("ICE settled: the socket answers consent checks")
	return true
}

// answerCheck is the socket reader's handling of STUN for a settled agent. b is lent for the call.
func (a *Agent) answerCheck(st *settled, b []byte, from netip.AddrPort) {
	if a.closing.Load() {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return // success responses to the pion agent's last checks, indications: nothing to do
	}
	var user stun.Username
	if err := user.GetFrom(m); err != nil || string(user) != st.username {
		return
	}
	if err := stun.NewShortTermIntegrity(a.pwd).Check(m); err != nil {
		return
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(m); err != nil {
			return
		}
	}
	if m.Contains(stun.AttrICEControlled) {
		return // the peer must be controlling: a lite agent is always controlled
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		stun.NewShortTermIntegrity(a.pwd), stun.Fingerprint)
	if err != nil {
		return
	}
	a.bind(from)
	// Move the pair before answering: once the peer holds the success response, media must go to it.
	if m.Contains(stun.AttrUseCandidate) && from != a.Remote() {
		a.remote.Store(&from)
		a.log.Debug("nominated pair moved", "remote", from)
	}
	if err := a.s.WriteTo(resp.Raw, from); err != nil {
		return
	}
	st.answered.Add(1)
	st.consent.Reset(st.timeout)
}
