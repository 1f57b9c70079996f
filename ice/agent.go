package ice

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pionice "github.com/pion/ice/v4"

	"github.com/rtcrelay/rtcrelay/pionlog"
)

// AgentConfig configures one session's ICE agent.
type AgentConfig struct {
	// Lite makes an ICE-lite agent (always controlled, host candidates only): the browser-facing answerer.
	Lite bool
	// Controlling makes a full agent that checks the remote candidates and nominates: the outbound offerer.
	Controlling bool
	// RemoteUfrag, RemotePwd, RemoteCandidates ("candidate:..." with or without "a=") and RemoteLite describe
	// the peer; an offerer learns them from the answer and may set them later with SetRemote.
	RemoteUfrag, RemotePwd string
	RemoteCandidates       []string
	RemoteLite             bool
	// DisconnectedTimeout and FailedTimeout override the defaults (lite: 15 s, full: 10 s; then 15 s more to
	// failed). A failed agent closes Done with ErrFailed.
	DisconnectedTimeout, FailedTimeout time.Duration
}

// Timeouts of the pion agents. A lite agent hears only the browser's consent checks (about every 5 s, RFC 7675),
// so it must tolerate several missing before declaring the path disconnected.
const (
	liteDisconnectedTimeout = 15 * time.Second
	fullDisconnectedTimeout = 10 * time.Second
	failedTimeout           = 15 * time.Second
	gatherTimeout           = 5 * time.Second
	maxBoundPerAgent        = 8
	maxTxIDsPerAgent        = 64
)

// Errors an agent reports.
var (
	ErrFailed = errors.New("ice: connectivity failed")
	ErrClosed = errors.New("ice: agent closed")
)

// Agent is one session's ICE agent over the shared socket.
type Agent struct {
	s    *Socket
	ep   Endpoint
	cfg  AgentConfig
	pion *pionice.Agent
	conn *agentConn
	log  *slog.Logger

	ufrag, pwd string
	candidates []string

	remote    atomic.Pointer[netip.AddrPort]
	connected chan struct{} // closed when a pair is selected
	connOnce  sync.Once
	done      chan struct{} // closed on failure or Close
	doneOnce  sync.Once
	err       error // set before done closes

	settle  atomic.Pointer[settled] // set by Settle: the socket answers the checks, pion is closed
	closing atomic.Bool             // Close has begun

	mu       sync.Mutex // guards the fields below and cfg's remote part
	bound    []netip.AddrPort
	txIDs    [maxTxIDsPerAgent][12]byte
	txNext   int
	txCount  int
	isClosed bool
}

// NewAgent creates the agent, registers its ufrag with the socket and gathers its host candidates (the
// advertised addresses with the socket's port) before returning. Validated remote addresses route to ep.
func (s *Socket) NewAgent(cfg AgentConfig, ep Endpoint) (*Agent, error) {
	if cfg.Lite && cfg.Controlling {
		return nil, errors.New("ice: a lite agent cannot be controlling")
	}
	if s.closed.Load() {
		return nil, net.ErrClosed
	}
	a := &Agent{s: s, ep: ep, cfg: cfg, connected: make(chan struct{}), done: make(chan struct{})}
	a.conn = newAgentConn(a)
	s.mu.Lock()
	for {
		a.ufrag, a.pwd = randomString(8), randomString(24) // ≈ 47 and 142 bits
		if _, taken := s.ufrags[a.ufrag]; !taken {
			break
		}
	}
	s.ufrags[a.ufrag] = a
	s.mu.Unlock()
	a.log = s.log.With("ufrag", a.ufrag)

	if err := a.build(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *Agent) build() error {
	networks := []pionice.NetworkType{pionice.NetworkTypeUDP4}
	if a.s.local.Addr().Is6() {
		networks = append(networks, pionice.NetworkTypeUDP6)
	}
	disconnected, failed := fullDisconnectedTimeout, failedTimeout
	if a.cfg.Lite {
		disconnected = liteDisconnectedTimeout
	}
	if a.cfg.DisconnectedTimeout > 0 {
		disconnected = a.cfg.DisconnectedTimeout
	}
	if a.cfg.FailedTimeout > 0 {
		failed = a.cfg.FailedTimeout
	}
	opts := []pionice.AgentOption{
		pionice.WithICELite(a.cfg.Lite),
		pionice.WithCandidateTypes([]pionice.CandidateType{pionice.CandidateTypeHost}),
		pionice.WithUDPMux(a.s.mux),
		pionice.WithLocalCredentials(a.ufrag, a.pwd),
		pionice.WithMulticastDNSMode(pionice.MulticastDNSModeDisabled),
		pionice.WithNetworkTypes(networks),
		pionice.WithIncludeLoopback(),
		pionice.WithDisconnectedTimeout(disconnected),
		pionice.WithFailedTimeout(failed),
	}
	opts = append(opts, pionice.WithLoggerFactory(pionlog.NewLoggerFactory(a.log)))
	if a.s.tnet != nil {
		opts = append(opts, pionice.WithNet(a.s.tnet))
	}
	if accept := a.s.accept; accept != nil {
		opts = append(opts, pionice.WithRemoteIPFilter(func(ip net.IP) bool {
			addr, ok := netip.AddrFromSlice(ip)
			return ok && accept(addr.Unmap())
		}))
	}
	pa, err := pionice.NewAgentWithOptions(opts...)
	if err != nil {
		return fmt.Errorf("ice: new agent: %w", err)
	}
	a.pion = pa

	gathered := make(chan struct{})
	var once sync.Once
	if err := pa.OnCandidate(func(c pionice.Candidate) {
		if c == nil {
			once.Do(func() { close(gathered) })
			return
		}
		a.mu.Lock()
		a.candidates = append(a.candidates, "candidate:"+c.Marshal())
		a.mu.Unlock()
	}); err != nil {
		return fmt.Errorf("ice: %w", err)
	}
	if err := pa.OnSelectedCandidatePairChange(a.onSelected); err != nil {
		return fmt.Errorf("ice: %w", err)
	}
	if err := pa.OnConnectionStateChange(a.onState); err != nil {
		return fmt.Errorf("ice: %w", err)
	}
	if err := pa.GatherCandidates(); err != nil {
		return fmt.Errorf("ice: gather: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(gatherTimeout):
		return errors.New("ice: gathering timed out")
	}
	a.mu.Lock()
	n := len(a.candidates)
	a.mu.Unlock()
	if n == 0 {
		return errors.New("ice: no local candidate")
	}
	return nil
}

func (a *Agent) onSelected(_, remote pionice.Candidate) {
	ip, err := netip.ParseAddr(remote.Address())
	if err != nil {
		a.log.Warn("selected pair with unparsable remote", "addr", remote.Address())
		return
	}
	ap := netip.AddrPortFrom(ip.Unmap(), uint16(remote.Port()))
	a.bind(ap)
	a.remote.Store(&ap)
	a.log.Debug("selected pair", "remote", ap)
	a.connOnce.Do(func() { close(a.connected) })
}

func (a *Agent) onState(st pionice.ConnectionState) {
	a.log.Debug("ICE state", "state", st.String())
	if a.settle.Load() != nil {
		return // the pion agent was closed by Settle; the socket answers the checks now
	}
	switch st {
	case pionice.ConnectionStateFailed:
		a.finish(ErrFailed)
	case pionice.ConnectionStateClosed:
		a.finish(ErrClosed)
	}
}

func (a *Agent) finish(err error) {
	a.doneOnce.Do(func() {
		a.err = err
		close(a.done)
	})
}

// SetRemote sets the peer's credentials and candidates before Connect (an offerer learns them from the answer).
func (a *Agent) SetRemote(ufrag, pwd string, candidates []string, lite bool) {
	a.mu.Lock()
	a.cfg.RemoteUfrag, a.cfg.RemotePwd, a.cfg.RemoteCandidates, a.cfg.RemoteLite = ufrag, pwd, candidates, lite
	a.mu.Unlock()
}

// LocalCredentials are the agent's ICE ufrag and password for the SDP.
func (a *Agent) LocalCredentials() (ufrag, pwd string) { return a.ufrag, a.pwd }

// LocalCandidates are the gathered host candidates, "candidate:..." lines without "a=".
func (a *Agent) LocalCandidates() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.candidates...)
}

// Connect runs connectivity checks until a pair is selected and returns the remote address: a controlled (or
// lite) agent answers the peer's checks, a controlling agent checks the remote candidates and nominates. It
// fails with ctx's error on its deadline, with ErrFailed or ErrClosed otherwise.
func (a *Agent) Connect(ctx context.Context) (netip.AddrPort, error) {
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	if cfg.RemoteUfrag == "" || cfg.RemotePwd == "" {
		return netip.AddrPort{}, errors.New("ice: no remote credentials")
	}
	if err := a.pion.SetRemoteICELite(cfg.RemoteLite); err != nil {
		return netip.AddrPort{}, fmt.Errorf("ice: %w", err)
	}
	var err error
	if cfg.Controlling {
		for _, line := range cfg.RemoteCandidates {
			a.addRemoteCandidate(line)
		}
		_, err = a.pion.StartDial(cfg.RemoteUfrag, cfg.RemotePwd)
	} else {
		_, err = a.pion.StartAccept(cfg.RemoteUfrag, cfg.RemotePwd)
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("ice: start: %w", err)
	}
	select {
	case <-a.connected:
		return a.Remote(), nil
	case <-a.done:
		return netip.AddrPort{}, a.err
	case <-ctx.Done():
		return netip.AddrPort{}, context.Cause(ctx)
	}
}

func (a *Agent) addRemoteCandidate(line string) {
	line = strings.TrimSpace(strings.TrimPrefix(line, "a="))
	c, err := pionice.UnmarshalCandidate(line)
	if err != nil {
		a.log.Debug("skipping remote candidate", "candidate", line, "err", err)
		return
	}
	if strings.HasSuffix(c.Address(), ".local") {
		return // mDNS is off
	}
	if ip, err := netip.ParseAddr(c.Address()); err == nil && a.s.accept != nil && !a.s.accept(ip.Unmap()) {
		return
	}
	if err := a.pion.AddRemoteCandidate(c); err != nil {
		a.log.Debug("remote candidate rejected", "candidate", line, "err", err)
	}
}

// Remote is the remote address of the selected pair (invalid before one is selected).
func (a *Agent) Remote() netip.AddrPort {
	if p := a.remote.Load(); p != nil {
		return *p
	}
	return netip.AddrPort{}
}

// Done is closed when the agent failed (consent lost) or was closed; Err tells which.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is ErrFailed or ErrClosed once Done is closed, nil before.
func (a *Agent) Err() error {
	select {
	case <-a.done:
		return a.err
	default:
		return nil
	}
}

// Close stops the agent and forgets its ufrag, transactions and bound addresses. It is idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.isClosed {
		a.mu.Unlock()
		return nil
	}
	a.isClosed = true
	a.closing.Store(true)
	settled := a.settle.Load()
	bound := a.bound
	a.bound = nil
	txIDs, n := a.txIDs, a.txCount
	a.mu.Unlock()

	s := a.s
	s.mu.Lock()
	if s.ufrags[a.ufrag] == a {
		delete(s.ufrags, a.ufrag)
	}
	for i := range n {
		if s.txIDs[txIDs[i]] == a {
			delete(s.txIDs, txIDs[i])
		}
	}
	for _, ap := range bound {
		if bd := (*s.bindings.Load())[ap]; bd != nil && bd.agent == a {
			s.setBindingLocked(ap, nil)
		}
	}
	s.mu.Unlock()

	var err error
	if settled != nil {
		settled.consent.Stop()
	} else if a.pion != nil {
		err = a.pion.Close()
	}
	a.conn.shutdown()
	a.finish(ErrClosed)
	return err
}

// bind routes DTLS/SRTP from ap to this agent's endpoint, at most maxBoundPerAgent addresses per agent (the
// oldest is dropped). A binding of another agent for the same address is taken over (the latest validation wins).
func (a *Agent) bind(ap netip.AddrPort) {
	a.mu.Lock()
	if a.isClosed {
		a.mu.Unlock()
		return
	}
	for _, b := range a.bound {
		if b == ap {
			a.mu.Unlock()
			return
		}
	}
	var evict netip.AddrPort
	if len(a.bound) == maxBoundPerAgent {
		evict = a.bound[0]
		a.bound = append(a.bound[:0], a.bound[1:]...)
	}
	a.bound = append(a.bound, ap)
	a.mu.Unlock()

	s := a.s
	s.mu.Lock()
	if evict.IsValid() {
		if bd := (*s.bindings.Load())[evict]; bd != nil && bd.agent == a {
			s.setBindingLocked(evict, nil)
		}
	}
	if prev := (*s.bindings.Load())[ap]; prev != nil && prev.agent != a {
		a.log.Warn("remote address moves to another session", "remote", ap, "from", prev.agent.ufrag)
	}
	s.setBindingLocked(ap, &binding{agent: a, ep: a.ep})
	s.mu.Unlock()
	a.log.Debug("bound remote address", "remote", ap)
}

// sentRequest records the transaction ID of a binding request the agent sends, so that its response (which
// carries no USERNAME) routes back here.
func (a *Agent) sentRequest(id [12]byte) {
	a.mu.Lock()
	if a.isClosed {
		a.mu.Unlock()
		return
	}
	old, hadOld := a.txIDs[a.txNext], a.txCount == maxTxIDsPerAgent
	a.txIDs[a.txNext] = id
	a.txNext = (a.txNext + 1) % maxTxIDsPerAgent
	if !hadOld {
		a.txCount++
	}
	a.mu.Unlock()

	s := a.s
	s.mu.Lock()
	if hadOld && s.txIDs[old] == a {
		delete(s.txIDs, old)
	}
	s.txIDs[id] = a
	s.mu.Unlock()
}

const ufragAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"

// randomString draws n characters of the ICE alphabet (6 bits each) from crypto/rand.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = ufragAlphabet[b[i]&63]
	}
	return string(b)
}
