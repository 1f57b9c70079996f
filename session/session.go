// Package session is one media association over the shared socket: an ICE agent (lite answerer or controlling
// offerer), the DTLS-SRTP handshake, and the SRTP contexts that decrypt on the socket's reader goroutine and
// encrypt in place on the session's writer.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/srtp"
	"github.com/rtcrelay/rtcrelay/twcc"
)

// Config configures a session.
type Config struct {
	Socket      *ice.Socket
	Certificate *dtls.Certificate
	// ICETimeout and DTLSTimeout bound the two stages of Start; 0 means 10 s each.
	ICETimeout, DTLSTimeout time.Duration
	// TWCCInterval is how often a session with EnableTWCC sends transport-cc feedback; 0 means 100 ms.
	TWCCInterval time.Duration
	Logger       *slog.Logger
}

const (
	defaultTimeout      = 10 * time.Second
	defaultTWCCInterval = 100 * time.Millisecond
)

// Stage names the step a session failed in; signaling maps it to the Web SDK's info strings.
type Stage string

// Stages.
const (
	StageICETimeout      Stage = "ICE timeout"
	StageICEError        Stage = "ICE error"
	StageDTLSError       Stage = "DTLS error"
	StageDTLSFingerprint Stage = "DTLS fingerprint error"
)

// StageError is the failure of a session in one stage.
type StageError struct {
	Stage Stage
	Err   error
}

func (e *StageError) Error() string { return string(e.Stage) + ": " + e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }

// Errors of the packet API.
var (
	ErrNotReady = errors.New("session: not connected yet")
	ErrClosed   = errors.New("session: closed")
	errICETime  = errors.New("ICE deadline exceeded")
	errDTLSTime = errors.New("DTLS deadline exceeded")
)

// Sink receives what a session decrypts, on the socket's reader goroutine.
type Sink interface {
	HandleRTP(p *packet.Buffer) // decrypted, p.Header parsed; lent for the call: Retain to keep
	HandleRTCP(plain []byte)    // lent for the call
}

// Stats are a session's counters.
type Stats struct {
	RTPIn, RTPBytesIn, RTCPIn, RTCPBytesIn     uint64
	RTPOut, RTPBytesOut, RTCPOut, RTCPBytesOut uint64
	DecryptFailures                            uint64 // authentication or replay failures, malformed packets
	DroppedNotReady                            uint64 // SRTP before the keys, DTLS with a full queue
	TWCCFeedbackOut                            uint64 // transport-cc feedback packets sent (also in RTCPOut)
}

type counters struct {
	rtpIn, rtpBytesIn, rtcpIn, rtcpBytesIn     atomic.Uint64
	rtpOut, rtpBytesOut, rtcpOut, rtcpBytesOut atomic.Uint64
	decryptFailures, notReady                  atomic.Uint64
	twccOut                                    atomic.Uint64
}

type sinkBox struct{ k Sink }

// keys are the SRTP contexts, installed once after the handshake.
type keys struct {
	rtpEnc *srtp.Encrypter // the writer goroutine's
	dec    *srtp.Decrypter // the socket reader's
}

// Session is one ICE+DTLS+SRTP association. Its endpoint methods run on the socket's reader goroutine;
// WriteRTP has one writer goroutine; WriteRTCP, Close and the accessors are safe from any goroutine.
type Session struct {
	cfg      Config
	log      *slog.Logger
	agent    *ice.Agent
	dconn    *dtlsConn
	answerer bool

	mu       sync.Mutex // guards remote, started, up and twccLoop
	remoteFP string
	role     dtls.Role
	haveRem  bool
	started  bool
	up       bool // the SRTP keys are installed
	twccLoop bool // the feedback loop was started

	twcc  atomic.Pointer[twccRecv] // set once by EnableTWCC
	loops sync.WaitGroup           // the feedback loop; Close waits for it

	dtls  atomic.Pointer[dtls.Conn]
	keys  atomic.Pointer[keys]
	sink  atomic.Pointer[sinkBox]
	wHdr  rtp.Header // the writer goroutine's
	rtcp  sync.Mutex // guards rtcpE
	rtcpE *srtp.Encrypter

	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
	closed chan struct{} // closed when Close finished tearing down
	c      counters
}

var _ ice.Endpoint = (*Session)(nil)

func newSession(cfg Config, answerer bool, acfg ice.AgentConfig) (*Session, error) {
	if cfg.Socket == nil || cfg.Certificate == nil {
		return nil, errors.New("session: Socket and Certificate are required")
	}
	if cfg.ICETimeout <= 0 {
		cfg.ICETimeout = defaultTimeout
	}
	if cfg.DTLSTimeout <= 0 {
		cfg.DTLSTimeout = defaultTimeout
	}
	if cfg.TWCCInterval <= 0 {
		cfg.TWCCInterval = defaultTWCCInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Session{cfg: cfg, answerer: answerer, closed: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.dconn = newDTLSConn(s)
	a, err := cfg.Socket.NewAgent(acfg, s)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	s.agent = a
	ufrag, _ := a.LocalCredentials()
	s.log = cfg.Logger.With("session", ufrag)
	return s, nil
}

// NewAnswerer answers an offer (a browser's): an ICE-lite controlled agent with the offer's credentials, and
// the DTLS server (a=setup:passive) that verifies the offer's fingerprint.
func NewAnswerer(cfg Config, offer *sdp.Description) (*Session, error) {
	if offer == nil || offer.ICEUfrag == "" || offer.ICEPwd == "" {
		return nil, errors.New("session: offer without ICE credentials")
	}
	if offer.Fingerprint == "" {
		return nil, errors.New("session: offer without fingerprint")
	}
	s, err := newSession(cfg, true, ice.AgentConfig{
		Lite: true, RemoteUfrag: offer.ICEUfrag, RemotePwd: offer.ICEPwd,
		RemoteCandidates: offer.Candidates, RemoteLite: offer.ICELite,
	})
	if err != nil {
		return nil, err
	}
	s.remoteFP, s.role, s.haveRem = offer.Fingerprint, dtls.RoleServer, true
	return s, nil
}

// NewOfferer makes the offering side (an outbound relay): a full controlling ICE agent and a=setup:actpass; the
// DTLS role comes from the answer given to SetRemote.
func NewOfferer(cfg Config) (*Session, error) {
	return newSession(cfg, false, ice.AgentConfig{Controlling: true})
}

// Transport is what our SDP says about this session's transport.
func (s *Session) Transport() sdp.Transport {
	ufrag, pwd := s.agent.LocalCredentials()
	t := sdp.Transport{
		ICEUfrag: ufrag, ICEPwd: pwd, Fingerprint: s.cfg.Certificate.Fingerprint(),
		Setup: "actpass", Lite: s.answerer, Candidates: s.agent.LocalCandidates(),
	}
	if s.answerer {
		t.Setup = "passive"
	}
	return t
}

// SetRemote takes the remote answer of an offerer: its credentials, candidates, fingerprint and DTLS role
// (answer "active" → we are the DTLS server; "passive" or none → we are the client).
func (s *Session) SetRemote(answer *sdp.Description) error {
	if s.answerer {
		return errors.New("session: SetRemote on an answerer")
	}
	if answer == nil || answer.ICEUfrag == "" || answer.ICEPwd == "" || answer.Fingerprint == "" {
		return errors.New("session: answer without ICE credentials or fingerprint")
	}
	role := dtls.RoleClient
	switch answer.Setup {
	case "active":
		role = dtls.RoleServer
	case "passive", "":
	default:
		return fmt.Errorf("session: answer has a=setup:%s", answer.Setup)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("session: SetRemote after Start")
	}
	s.remoteFP, s.role, s.haveRem = answer.Fingerprint, role, true
	s.agent.SetRemote(answer.ICEUfrag, answer.ICEPwd, answer.Candidates, answer.ICELite)
	return nil
}

// Start runs ICE (within ICETimeout) then the DTLS handshake (within DTLSTimeout) and installs the SRTP
// contexts. A failure closes the session with, and returns, a *StageError.
func (s *Session) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || !s.haveRem {
		s.mu.Unlock()
		return errors.New("session: Start twice or without remote description")
	}
	s.started = true
	role, fp := s.role, s.remoteFP
	s.mu.Unlock()

	// Closing the session aborts the stages.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(ErrClosed) })
	defer stop()

	iceCtx, iceCancel := context.WithTimeoutCause(ctx, s.cfg.ICETimeout, errICETime)
	remote, err := s.agent.Connect(iceCtx)
	iceCancel()
	if err != nil {
		stage := StageICEError
		if errors.Is(err, errICETime) || errors.Is(err, context.DeadlineExceeded) {
			stage = StageICETimeout
		}
		return s.fail(&StageError{Stage: stage, Err: err})
	}
	s.log.Debug("ICE connected", "remote", remote)

	dtlsCtx, dtlsCancel := context.WithTimeoutCause(ctx, s.cfg.DTLSTimeout, errDTLSTime)
	conn, k, err := dtls.Handshake(dtlsCtx, s.dconn, net.UDPAddrFromAddrPort(remote), dtls.HandshakeConfig{
		Certificate: s.cfg.Certificate, Role: role, RemoteFingerprint: fp, Logger: s.log,
	})
	dtlsCancel()
	if err != nil {
		stage := StageDTLSError
		if errors.Is(err, dtls.ErrFingerprint) {
			stage = StageDTLSFingerprint
		}
		return s.fail(&StageError{Stage: stage, Err: err})
	}
	s.dtls.Store(conn)
	rtpEnc, rtcpEnc, dec, err := srtp.NewPair(k)
	if err != nil {
		return s.fail(&StageError{Stage: StageDTLSError, Err: err})
	}
	s.rtcp.Lock()
	s.rtcpE = rtcpEnc
	s.rtcp.Unlock()
	s.keys.Store(&keys{rtpEnc: rtpEnc, dec: dec})
	if s.ctx.Err() != nil { // closed meanwhile: Close may have missed the DTLS conn
		conn.Close()
		return s.Err()
	}
	s.mu.Lock()
	s.up = true
	s.startTWCCLocked()
	s.mu.Unlock()
	// A lite (answering) agent's pion state is not needed past the handshake: the socket answers the peer's
	// consent checks from now on, which frees three goroutines and about 20 kB per session.
	s.agent.Settle()
	go s.watch(conn)
	s.log.Debug("session up", "remote", remote, "dtls_role", role.String(), "srtp_profile", k.Profile)
	return nil
}

func (s *Session) fail(err *StageError) error {
	s.Close(err)
	return err
}

// watch ends the session when ICE fails (consent lost) or the peer closes DTLS.
func (s *Session) watch(conn *dtls.Conn) {
	select {
	case <-s.agent.Done():
		s.Close(&StageError{Stage: StageICEError, Err: s.agent.Err()})
	case <-conn.Done():
		err := conn.Err()
		if err == nil {
			err = dtls.ErrPeerClosed
		}
		s.Close(err)
	case <-s.ctx.Done():
	}
}

// SetSink sets who gets the decrypted RTP and RTCP; before or after Start. nil drops them.
func (s *Session) SetSink(k Sink) {
	if k == nil {
		s.sink.Store(nil)
		return
	}
	s.sink.Store(&sinkBox{k})
}

// HandleDTLS queues a copy of a DTLS datagram for the handshake (socket reader goroutine).
func (s *Session) HandleDTLS(b []byte, _ netip.AddrPort) {
	if !s.dconn.push(b) {
		s.c.notReady.Add(1)
	}
}

// HandleSRTP decrypts p in place (socket reader goroutine) and hands the plaintext to the sink.
func (s *Session) HandleSRTP(p *packet.Buffer, _ netip.AddrPort) {
	k := s.keys.Load()
	if k == nil {
		s.c.notReady.Add(1)
		return
	}
	plain, err := k.dec.DecryptRTP(p.Bytes(), &p.Header)
	if err != nil {
		s.c.decryptFailures.Add(1)
		return
	}
	p.SetBytes(plain)
	s.c.rtpIn.Add(1)
	s.c.rtpBytesIn.Add(uint64(len(plain)))
	if t := s.twcc.Load(); t != nil {
		if seq, ok := twcc.SequenceNumber(&p.Header, t.extID); ok {
			t.rec.Record(p.Header.SSRC, seq, p.Arrival)
		}
	}
	if b := s.sink.Load(); b != nil {
		b.k.HandleRTP(p)
	}
}

// HandleSRTCP decrypts p in place (socket reader goroutine) and hands the compound RTCP to the sink.
func (s *Session) HandleSRTCP(p *packet.Buffer, _ netip.AddrPort) {
	k := s.keys.Load()
	if k == nil {
		s.c.notReady.Add(1)
		return
	}
	plain, err := k.dec.DecryptRTCP(p.Bytes())
	if err != nil {
		s.c.decryptFailures.Add(1)
		return
	}
	s.c.rtcpIn.Add(1)
	s.c.rtcpBytesIn.Add(uint64(len(plain)))
	if b := s.sink.Load(); b != nil {
		b.k.HandleRTCP(plain)
	}
}

// WriteRTP encrypts the plaintext RTP packet in buf in place (cap(buf) >= len(buf)+16) and sends it to the
// selected remote. It must be called from one goroutine at a time: the session's writer.
func (s *Session) WriteRTP(buf []byte) error {
	out, err := s.encryptRTP(buf)
	if err != nil {
		return err
	}
	if err := s.cfg.Socket.WriteTo(out, s.agent.Remote()); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	return nil
}

// WriteRTPBatch is WriteRTP through a batch: buf must be b.Buf() filled with the plaintext; it is encrypted in
// place and queued for the selected remote (sent when the batch fills or is flushed). Same goroutine rule as
// WriteRTP; b must be a batch of Sender().
func (s *Session) WriteRTPBatch(b forwarder.BatchSender, buf []byte) error {
	out, err := s.encryptRTP(buf)
	if err != nil {
		return err
	}
	if err := b.Queue(len(out), s.agent.Remote()); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	return nil
}

// encryptRTP encrypts buf in place for sending and counts it (the writer goroutine).
func (s *Session) encryptRTP(buf []byte) ([]byte, error) {
	k := s.keys.Load()
	if k == nil {
		return nil, ErrNotReady
	}
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	out, err := k.rtpEnc.EncryptRTP(buf, &s.wHdr)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	s.c.rtpOut.Add(1)
	s.c.rtpBytesOut.Add(uint64(len(buf)))
	return out, nil
}

// Sender is the socket the session sends on, as the forwarder's batch factory (for WriteRTPBatch).
func (s *Session) Sender() forwarder.Sender { return socketTransport{s.cfg.Socket} }

// socketTransport makes the forwarder's batches on an ice.Socket; equal for sessions on the same socket.
type socketTransport struct{ s *ice.Socket }

func (t socketTransport) NewBatch() forwarder.BatchSender { return t.s.NewBatch() }

var (
	_ forwarder.Downstream  = (*Session)(nil)
	_ forwarder.BatchSender = (*ice.Batch)(nil)
)

// WriteRTCP encrypts a compound RTCP packet into the session's scratch and sends it; goroutine-safe. plain is
// not modified.
func (s *Session) WriteRTCP(plain []byte) error {
	if s.keys.Load() == nil {
		return ErrNotReady
	}
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	// The scratch is a pooled datagram buffer rather than the session's own: RTCP is a few packets a second,
	// and an idle session then holds no buffer.
	scratch := packet.Get()
	defer scratch.Release()
	s.rtcp.Lock()
	defer s.rtcp.Unlock()
	out, err := s.rtcpE.EncryptRTCP(scratch.ReadSlice()[:0], plain)
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	if err := s.cfg.Socket.WriteTo(out, s.agent.Remote()); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	s.c.rtcpOut.Add(1)
	s.c.rtcpBytesOut.Add(uint64(len(plain)))
	return nil
}

// SRTPProfile is the negotiated SRTP protection profile (IANA number, 0x0007 AEAD_AES_128_GCM), 0 before DTLS.
func (s *Session) SRTPProfile() uint16 {
	if k := s.keys.Load(); k != nil {
		return k.dec.Profile()
	}
	return 0
}

// Remote is the selected remote address (invalid before ICE connected).
func (s *Session) Remote() netip.AddrPort { return s.agent.Remote() }

// Done is closed when the session ended; Err tells why.
func (s *Session) Done() <-chan struct{} { return s.ctx.Done() }

// Err is the cause the session ended with (a *StageError for a failed Start), nil while it runs.
func (s *Session) Err() error {
	if s.ctx.Err() == nil {
		return nil
	}
	return context.Cause(s.ctx)
}

// Close ends the session with cause (nil → ErrClosed): close_notify to the peer, the agent closed, its
// addresses unbound. Idempotent; later causes are ignored. It waits until the teardown is complete.
func (s *Session) Close(cause error) {
	if cause == nil {
		cause = ErrClosed
	}
	s.once.Do(func() {
		// Cancelled under mu, so that no feedback loop starts after this (startTWCCLocked checks ctx under
		// mu), and one that started is waited for.
		s.mu.Lock()
		s.cancel(cause)
		s.mu.Unlock()
		s.loops.Wait()
		if c := s.dtls.Load(); c != nil {
			if err := c.Close(); err != nil {
				s.log.Debug("DTLS close", "err", err)
			}
		}
		s.dconn.Close()
		if err := s.agent.Close(); err != nil {
			s.log.Debug("ICE close", "err", err)
		}
		s.log.Debug("session closed", "cause", cause)
		close(s.closed)
	})
	<-s.closed
}

// Stats reads the session's counters.
func (s *Session) Stats() Stats {
	c := &s.c
	return Stats{
		RTPIn: c.rtpIn.Load(), RTPBytesIn: c.rtpBytesIn.Load(), RTCPIn: c.rtcpIn.Load(), RTCPBytesIn: c.rtcpBytesIn.Load(),
		RTPOut: c.rtpOut.Load(), RTPBytesOut: c.rtpBytesOut.Load(), RTCPOut: c.rtcpOut.Load(), RTCPBytesOut: c.rtcpBytesOut.Load(),
		DecryptFailures: c.decryptFailures.Load(), DroppedNotReady: c.notReady.Load(),
		TWCCFeedbackOut: c.twccOut.Load(),
	}
}

// twccRecv is the transport-cc state of a session that sends feedback.
type twccRecv struct {
	extID uint8
	rec   *twcc.Recorder
}

// PrimeSend makes the SRTP state of the SSRCs the session is about to send RTP with (0s are skipped), so that a
// player's memory is allocated at its setup, not at its first packet. It must be called after Start and before
// anything sends RTP on the session (before it is subscribed); it does nothing before the keys are agreed.
func (s *Session) PrimeSend(ssrcs ...uint32) {
	k := s.keys.Load()
	if k == nil {
		return
	}
	for _, ssrc := range ssrcs {
		if ssrc != 0 {
			k.rtpEnc.Prime(ssrc)
		}
	}
}

// EnableTWCC makes the session record the transport-wide sequence numbers of the RTP it receives (header
// extension extID, as negotiated) and send transport-cc feedback with senderSSRC to the remote every
// Config.TWCCInterval while packets arrive. Before or after Start; later calls are ignored, as is extID 0.
func (s *Session) EnableTWCC(extID uint8, senderSSRC uint32) {
	if extID == 0 || !s.twcc.CompareAndSwap(nil, &twccRecv{extID: extID, rec: twcc.NewRecorder(senderSSRC)}) {
		return
	}
	s.mu.Lock()
	s.startTWCCLocked()
	s.mu.Unlock()
}

// startTWCCLocked starts the feedback loop once both TWCC is enabled and the keys are up (s.mu held).
func (s *Session) startTWCCLocked() {
	t := s.twcc.Load()
	if t == nil || !s.up || s.twccLoop || s.ctx.Err() != nil {
		return
	}
	s.twccLoop = true
	s.loops.Go(func() { s.sendTWCC(t.rec) })
}

// sendTWCC sends the recorder's feedback every interval until the session ends; nothing when no packet came.
func (s *Session) sendTWCC(rec *twcc.Recorder) {
	tick := time.NewTicker(s.cfg.TWCCInterval)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		for _, p := range rec.Feedback() {
			b, err := p.Marshal()
			if err == nil {
				err = s.WriteRTCP(b)
			}
			if err != nil {
				if failures++; failures == 1 || failures%100 == 0 {
					s.log.Debug("transport-cc feedback not sent", "err", err, "failures", failures)
				}
				continue
			}
			s.c.twccOut.Add(1)
		}
	}
}
