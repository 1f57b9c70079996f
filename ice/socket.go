// Package ice owns the media UDP port: one socket for every session, read by one goroutine that demultiplexes
// each datagram by its first byte (RFC 7983 / RFC 9443) to the session it belongs to, and the pion/ice agents
// (ICE-lite answerers, full controlling offerers) that run over it through a pionice.UDPMux of ours.
//
// Authenticate before allocate: a remote address is bound to a session only after its agent answered an
// authenticated connectivity check from it, got an answer to its own check from it, or selected a pair with it.
// DTLS and SRTP from any other address are dropped and counted.
package ice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/transport/v5"

	"github.com/rtcrelay/rtcrelay/packet"
)

// SocketConfig configures the shared media socket.
type SocketConfig struct {
	// Addr is the bind address, e.g. 0.0.0.0:0 or [::]:3478.
	Addr netip.AddrPort
	// Advertise are the addresses put in candidates (public IP, 1:1 NAT), with the socket's real port; empty → the
	// bound IP, or every interface address when bound to the unspecified address.
	Advertise []netip.Addr
	// AcceptRemote filters remote addresses; nil accepts all. Datagrams from rejected addresses are dropped and
	// counted, and agents do not check or accept candidates there.
	AcceptRemote func(netip.Addr) bool
	// ReadBuffer and WriteBuffer are SO_RCVBUF and SO_SNDBUF in bytes (forced past the sysctl limits when the
	// process may); 0 leaves the kernel default.
	ReadBuffer, WriteBuffer int
	// Logger receives the socket's and the agents' logs; nil discards them.
	Logger *slog.Logger
	// SendBatch is how many datagrams a Batch (the forwarder's send path) queues before one sendmmsg; 0 means
	// DefaultSendBatch, 1 sends each datagram with its own sendto.
	SendBatch int
	// SendBatchBytes is the size of a Batch's slab, into which its datagrams are packed; 0 means
	// DefaultSendBatchBytes. A Batch flushes when it has no room for another datagram of BatchSlotSize.
	SendBatchBytes int
	// NoGSO stops a Batch from coalescing equal-size datagrams to one remote into one UDP_SEGMENT message.
	NoGSO bool
	// RecvBatch is how many datagrams Serve reads per recvmmsg (Linux); 0 means DefaultRecvBatch, 1 reads one
	// datagram per call.
	RecvBatch int
	// Net is the network the socket is bound on and the agents run over; nil is the host's network. With a Net
	// whose sockets are not *net.UDPConn (pion/transport vnet in tests), the socket reads with ReadFrom and
	// writes each datagram with WriteTo: no socket options, no sendmmsg, no GSO.
	Net transport.Net
}

// DefaultRecvBatch is the number of datagrams Serve reads per recvmmsg.
const DefaultRecvBatch = 32

// Endpoint is what a session registers with the socket: the demux calls it on the reader goroutine.
type Endpoint interface {
	HandleDTLS(b []byte, from netip.AddrPort)          // b is lent for the call: copy to keep
	HandleSRTP(p *packet.Buffer, from netip.AddrPort)  // p lent for the call: Retain to keep
	HandleSRTCP(p *packet.Buffer, from netip.AddrPort) // p lent for the call: Retain to keep
}

// SocketStats are the socket's counters since Listen.
type SocketStats struct {
	Datagrams, Bytes        uint64 // read from the socket
	STUN, DTLS, SRTP, SRTCP uint64 // delivered to an agent or an endpoint
	Sent, SentBytes         uint64
	ReadErrors, WriteErrors uint64

	DroppedFiltered  uint64 // remote address rejected by AcceptRemote
	DroppedUnknown   uint64 // first byte matches no protocol (or empty datagram)
	DroppedMalformed uint64 // STUN that does not parse
	DroppedNoAgent   uint64 // STUN for no agent (unknown ufrag, unmatched response)
	DroppedUnbound   uint64 // DTLS/SRTP/SRTCP from an address no agent validated
	DroppedQueueFull uint64 // an agent's STUN queue was full

	BatchStats // the batched send path
}

type counters struct {
	datagrams, bytes        atomic.Uint64
	stun, dtls, srtp, srtcp atomic.Uint64
	sent, sentBytes         atomic.Uint64
	readErrors, writeErrors atomic.Uint64
	syscalls, gsoMessages   atomic.Uint64
	gsoFailures             atomic.Uint64

	filtered, unknown, malformed, noAgent, unbound, queueFull atomic.Uint64
}

// binding routes a validated remote address to its agent's endpoint.
type binding struct {
	agent *Agent
	ep    Endpoint
}

// Socket is the one owner of the media UDP port.
type Socket struct {
	conn   *net.UDPConn   // nil when the Net's socket is not a *net.UDPConn
	pc     net.PacketConn // the socket, whatever its type
	tnet   transport.Net  // SocketConfig.Net
	local  netip.AddrPort
	listen []net.Addr // candidate addresses handed to pion, with the real port
	accept func(netip.Addr) bool
	log    *slog.Logger
	mux    *udpMux

	// bindings is read on the packet path without a lock; writers copy it under mu.
	bindings atomic.Pointer[map[netip.AddrPort]*binding]

	mu     sync.Mutex // guards the tables below and bindings writes
	ufrags map[string]*Agent
	txIDs  map[[12]byte]*Agent // outstanding binding requests of controlling/full agents

	raw            syscall.RawConn
	v6             bool // an AF_INET6 socket: batches write sockaddr_in6
	sendBatch      int
	sendBatchBytes int
	recvBatch      int
	gso            bool
	gsoOff         atomic.Bool // the kernel refused GSO once

	c       counters
	lastLog atomic.Int64 // unix nanos of the last drop log
	closed  atomic.Bool
	epoch   time.Time
}

// Listen binds the media socket. It does not read until Serve.
func Listen(cfg SocketConfig) (*Socket, error) {
	if !cfg.Addr.IsValid() {
		return nil, errors.New("ice: invalid bind address")
	}
	network := "udp4"
	if cfg.Addr.Addr().Is6() && !cfg.Addr.Addr().Is4In6() {
		network = "udp"
	}
	bind := netip.AddrPortFrom(cfg.Addr.Addr().Unmap(), cfg.Addr.Port())
	var conn *net.UDPConn
	var pc net.PacketConn
	var err error
	if cfg.Net == nil {
		conn, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(bind))
		pc = conn
	} else {
		var tc transport.UDPConn
		tc, err = cfg.Net.ListenUDP(network, net.UDPAddrFromAddrPort(bind))
		pc = tc
		conn, _ = tc.(*net.UDPConn)
	}
	if err != nil {
		return nil, fmt.Errorf("ice: listen %s: %w", bind, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	la, ok := pc.LocalAddr().(*net.UDPAddr)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("ice: local address %v is not UDP", pc.LocalAddr())
	}
	local := la.AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	s := &Socket{
		conn:   conn,
		pc:     pc,
		tnet:   cfg.Net,
		local:  local,
		accept: cfg.AcceptRemote,
		log:    log.With("component", "ice"),
		ufrags: make(map[string]*Agent),
		txIDs:  make(map[[12]byte]*Agent),
		epoch:  time.Now(),
	}
	s.listen, err = listenAddrs(local, cfg.Advertise)
	if err != nil {
		pc.Close()
		return nil, err
	}
	s.v6 = network == "udp"
	s.sendBatch = cfg.SendBatch
	if s.sendBatch <= 0 {
		s.sendBatch = DefaultSendBatch
	}
	s.sendBatchBytes = cfg.SendBatchBytes
	if s.sendBatchBytes <= 0 {
		s.sendBatchBytes = DefaultSendBatchBytes
	}
	s.recvBatch = cfg.RecvBatch
	if s.recvBatch <= 0 {
		s.recvBatch = DefaultRecvBatch
	}
	if conn == nil {
		s.sendBatch = 1 // every Batch sends with WriteTo
		return s.finish(cfg), nil
	}
	setBuffers(conn, cfg.ReadBuffer, cfg.WriteBuffer, log)
	s.raw, err = conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ice: %w", err)
	}
	return s.finish(cfg), nil
}

// finish sets up what every socket has.
func (s *Socket) finish(cfg SocketConfig) *Socket {
	s.gso = !cfg.NoGSO && s.conn != nil
	s.bindings.Store(&map[netip.AddrPort]*binding{})
	s.mux = &udpMux{s: s}
	return s
}

// listenAddrs are the addresses (with the bound port) that agents turn into host candidates.
func listenAddrs(local netip.AddrPort, advertise []netip.Addr) ([]net.Addr, error) {
	var ips []netip.Addr
	switch {
	case len(advertise) > 0:
		ips = advertise
	case !local.Addr().IsUnspecified():
		ips = []netip.Addr{local.Addr()}
	default:
		ifAddrs, err := net.InterfaceAddrs()
		if err != nil {
			return nil, fmt.Errorf("ice: interface addresses: %w", err)
		}
		v6 := local.Addr().Is6()
		for _, a := range ifAddrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := pfx.Addr()
			if ip.IsLinkLocalUnicast() || ip.IsMulticast() || (ip.Is6() && !v6) {
				continue
			}
			ips = append(ips, ip)
		}
	}
	out := make([]net.Addr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), local.Port())))
	}
	if len(out) == 0 {
		return nil, errors.New("ice: no address to advertise")
	}
	return out, nil
}

// LocalAddr is the bound address with its real port.
func (s *Socket) LocalAddr() netip.AddrPort { return s.local }

// Serve runs the read loop until Close (returns nil) or ctx ends (returns the context's error). Handlers run on
// this goroutine; exactly one Serve may run per socket. On Linux it reads up to SocketConfig.RecvBatch
// datagrams per recvmmsg; elsewhere, or with RecvBatch 1, one per call.
func (s *Socket) Serve(ctx context.Context) error {
	if s.conn == nil {
		return s.servePacketConn(ctx)
	}
	stop := context.AfterFunc(ctx, func() { s.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if ok, err := s.serveBatched(ctx); ok {
		return err
	}
	return s.serveSingle(ctx)
}

// serveSingle is the read loop with one ReadFromUDPAddrPort per datagram.
func (s *Socket) serveSingle(ctx context.Context) error {
	return s.serveEach(ctx, s.conn.ReadFromUDPAddrPort)
}

// servePacketConn is Serve over a socket that is not a *net.UDPConn: one ReadFrom per datagram.
func (s *Socket) servePacketConn(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	return s.serveEach(ctx, func(b []byte) (int, netip.AddrPort, error) {
		n, addr, err := s.pc.ReadFrom(b)
		if err != nil {
			return 0, netip.AddrPort{}, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			return 0, netip.AddrPort{}, nil // not UDP: counted and dropped by dispatch as unknown
		}
		return n, ua.AddrPort(), nil
	})
}

// serveEach reads one datagram per call of read and dispatches it.
func (s *Socket) serveEach(ctx context.Context, read func([]byte) (int, netip.AddrPort, error)) error {
	p := packet.Get()
	defer func() { p.Release() }()
	for {
		n, from, err := read(p.ReadSlice())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.c.readErrors.Add(1)
			s.log.Warn("media socket read", "err", err)
			continue
		}
		p.SetLen(n)
		p.Arrival = int64(time.Since(s.epoch))
		s.dispatch(p, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		// A handler that kept the datagram owns it now; read the next one into a fresh buffer.
		if p.Refs() != 1 {
			p.Release()
			p = packet.Get()
		}
	}
}

// dispatch classifies one datagram (RFC 7983 / 9443) and routes it. p is lent to handlers for the call.
func (s *Socket) dispatch(p *packet.Buffer, from netip.AddrPort) {
	b := p.Bytes()
	s.c.datagrams.Add(1)
	s.c.bytes.Add(uint64(len(b)))
	if s.accept != nil && !s.accept(from.Addr()) {
		s.drop(&s.c.filtered, "filtered", from)
		return
	}
	if len(b) == 0 {
		s.drop(&s.c.unknown, "unknown", from)
		return
	}
	switch c := b[0]; {
	case c <= 3:
		s.routeSTUN(p, from)
	case c >= 20 && c <= 63:
		bd := (*s.bindings.Load())[from]
		if bd == nil {
			s.drop(&s.c.unbound, "unbound", from)
			return
		}
		s.c.dtls.Add(1)
		bd.ep.HandleDTLS(b, from)
	case c >= 128 && c <= 191:
		bd := (*s.bindings.Load())[from]
		if bd == nil {
			s.drop(&s.c.unbound, "unbound", from)
			return
		}
		if len(b) > 1 && b[1] >= 192 && b[1] <= 223 {
			s.c.srtcp.Add(1)
			bd.ep.HandleSRTCP(p, from)
			return
		}
		s.c.srtp.Add(1)
		bd.ep.HandleSRTP(p, from)
	default:
		s.drop(&s.c.unknown, "unknown", from)
	}
}

// routeSTUN finds the agent a STUN datagram belongs to: requests by the local ufrag in USERNAME, responses by
// the transaction ID of the agent's own request, indications by the bound address.
func (s *Socket) routeSTUN(p *packet.Buffer, from netip.AddrPort) {
	var m stunMsg
	if !parseSTUN(p.Bytes(), &m) {
		s.drop(&s.c.malformed, "malformed STUN", from)
		return
	}
	var a *Agent
	s.mu.Lock()
	switch m.class() {
	case stunClassRequest:
		if u := localUfrag(m.username); u != nil {
			a = s.ufrags[string(u)]
		}
	case stunClassSuccess, stunClassError:
		a = s.txIDs[[12]byte(m.txID)]
		if a != nil {
			delete(s.txIDs, [12]byte(m.txID))
		}
	}
	s.mu.Unlock()
	if a == nil {
		if bd := (*s.bindings.Load())[from]; bd != nil && m.class() == stunClassIndication {
			a = bd.agent
		}
	}
	if a == nil {
		s.drop(&s.c.noAgent, "STUN for no agent", from)
		return
	}
	if m.typ == stunBindingSuccess {
		// The response answers a check this agent sent to from, under a 96-bit random transaction ID.
		a.bind(from)
	}
	if !a.conn.deliver(p, from) {
		s.drop(&s.c.queueFull, "agent STUN queue full", from)
		return
	}
	s.c.stun.Add(1)
}

// WriteTo sends one datagram from the media port.
func (s *Socket) WriteTo(b []byte, to netip.AddrPort) error {
	var err error
	if s.conn != nil {
		_, err = s.conn.WriteToUDPAddrPort(b, to)
	} else {
		_, err = s.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
	}
	if err != nil {
		s.c.writeErrors.Add(1)
		return fmt.Errorf("ice: send to %s: %w", to, err)
	}
	s.c.syscalls.Add(1)
	s.c.sent.Add(1)
	s.c.sentBytes.Add(uint64(len(b)))
	return nil
}

// Stats reads the counters.
func (s *Socket) Stats() SocketStats {
	c := &s.c
	return SocketStats{
		Datagrams: c.datagrams.Load(), Bytes: c.bytes.Load(),
		STUN: c.stun.Load(), DTLS: c.dtls.Load(), SRTP: c.srtp.Load(), SRTCP: c.srtcp.Load(),
		Sent: c.sent.Load(), SentBytes: c.sentBytes.Load(),
		ReadErrors: c.readErrors.Load(), WriteErrors: c.writeErrors.Load(),
		DroppedFiltered: c.filtered.Load(), DroppedUnknown: c.unknown.Load(), DroppedMalformed: c.malformed.Load(),
		DroppedNoAgent: c.noAgent.Load(), DroppedUnbound: c.unbound.Load(), DroppedQueueFull: c.queueFull.Load(),
		BatchStats: BatchStats{Syscalls: c.syscalls.Load(), GSOMessages: c.gsoMessages.Load(), GSOFailures: c.gsoFailures.Load()},
	}
}

// Close closes the socket; Serve returns nil. Agents must be closed by their sessions.
func (s *Socket) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.pc.Close()
}

const dropLogInterval = 10 * time.Second

// drop counts a dropped datagram and logs at most once per dropLogInterval for the whole socket.
func (s *Socket) drop(c *atomic.Uint64, reason string, from netip.AddrPort) {
	c.Add(1)
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(dropLogInterval) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	st := s.Stats()
	s.log.Info("dropping datagrams", "reason", reason, "from", from,
		"filtered", st.DroppedFiltered, "unknown", st.DroppedUnknown, "malformed", st.DroppedMalformed,
		"no_agent", st.DroppedNoAgent, "unbound", st.DroppedUnbound, "queue_full", st.DroppedQueueFull)
}

// setBinding points from at bd (nil removes it), copying the table.
func (s *Socket) setBindingLocked(from netip.AddrPort, bd *binding) {
	old := *s.bindings.Load()
	m := make(map[netip.AddrPort]*binding, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if bd == nil {
		delete(m, from)
	} else {
		m[from] = bd
	}
	s.bindings.Store(&m)
}
