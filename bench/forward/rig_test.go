package forward

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/pprof/profile"
	"github.com/pion/rtp"
	"golang.org/x/sys/unix"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/srtp"
)

const (
	payloadSize  = 1200
	keyframeEach = 30   // publisher packets between keyframes
	window       = 2048 // forwarded datagrams in flight at most
	warmPackets  = 1500
	pubWindow    = 128     // publisher packets in flight at most (the writer queues hold 512)
	sockBuf      = 8 << 20 // SO_RCVBUF/SO_SNDBUF of every socket
	srtpProfile  = dtls.ProfileAEADAES128GCM
	videoPT      = 96
	pubSSRC      = 0x11223344
)

// Header extension IDs of the publisher (as a browser's offer would number them).
const (
	extAbsSendTime = 3
	extMid         = 4
	extTWCC        = 5
)

func key(i int) (k, salt []byte) {
	return bytes.Repeat([]byte{byte(i + 1)}, 16), bytes.Repeat([]byte{byte(i + 101)}, 12)
}

// template is a plaintext VP8 RTP packet: three one-byte extensions, a payload descriptor, 1200 bytes.
func template() (pkt []byte, payloadOff int) {
	h := rtp.Header{Version: 2, PayloadType: videoPT, SSRC: pubSSRC}
	_ = h.SetExtension(extAbsSendTime, []byte{0, 0, 0})
	_ = h.SetExtension(extMid, []byte{'0'})
	_ = h.SetExtension(extTWCC, []byte{0, 0})
	payload := make([]byte, payloadSize)
	for i := range payload {
		payload[i] = byte(i)
	}
	copy(payload, []byte{0x90, 0x80, 0x01, 0x00, 0x9d, 0x01, 0x2a}) // X, S, PID 0; picture ID; keyframe
	raw, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
	if err != nil {
		panic(err)
	}
	return raw, len(raw) - payloadSize
}

// publisher sends SRTP packets made from the template over its own UDP socket.
type publisher struct {
	conn *net.UDPConn
	to   netip.AddrPort
	enc  *srtp.Encrypter
	hdr  rtp.Header
	tmpl []byte
	poff int
	buf  []byte
	seq  uint16
	n    int
}

func newPublisher(tb testing.TB, to netip.AddrPort) *publisher {
	conn := listenUDP(tb)
	k, s := key(0)
	enc, _, _, err := srtp.NewPairFromKeys(srtpProfile, k, s, k, s)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl, poff := template()
	return &publisher{conn: conn, to: to, enc: enc, tmpl: tmpl, poff: poff, buf: make([]byte, 0, 1600)}
}

// packet builds the next plaintext packet into p.buf.
func (p *publisher) packet() []byte {
	b := append(p.buf[:0], p.tmpl...)
	b[2], b[3] = byte(p.seq>>8), byte(p.seq)
	ts := uint32(p.n/4) * 3000
	b[4], b[5], b[6], b[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
	if p.n%keyframeEach != 0 {
		b[p.poff+3] |= 1 // VP8 P bit: a delta frame
	}
	// A send stamp in the payload (after the descriptor), as the load tool does.
	now := uint64(time.Now().UnixNano())
	for i := range 8 {
		b[p.poff+8+i] = byte(now >> (8 * i))
	}
	p.seq++
	p.n++
	return b
}

func (p *publisher) send(tb testing.TB) {
	out, err := p.enc.EncryptRTP(p.packet(), &p.hdr)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(out, p.to); err != nil {
		tb.Fatal(err)
	}
}

func listenUDP(tb testing.TB) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadBuffer(sockBuf)
	_ = c.SetWriteBuffer(sockBuf)
	tb.Cleanup(func() { c.Close() })
	return c
}

// receiver counts datagrams with recvmmsg into prebuilt buffers (no allocation, no decryption).
type receiver struct {
	conn  *net.UDPConn
	raw   syscall.RawConn
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	bufs  []byte
	fn    func(fd uintptr) bool
	got   int
	fl    *flow
	ap    netip.AddrPort
	fd    int            // an idle receiver's socket (conn and raw are nil)
	each  func(p []byte) // if not nil, called with each datagram read
	batch int            // datagrams per recvmmsg, up to rxBatch
}

const rxBatch = 64

func newReceiver(tb testing.TB, fl *flow) *receiver {
	r := &receiver{conn: listenUDP(tb)}
	r.init(fl)
	var err error
	if r.raw, err = r.conn.SyscallConn(); err != nil {
		tb.Fatal(err)
	}
	r.ap = r.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	go r.run()
	return r
}

func (r *receiver) init(fl *flow) {
	r.fl, r.batch = fl, rxBatch
	r.msgs = make([]unix.Mmsghdr, rxBatch)
	r.iovs = make([]unix.Iovec, rxBatch)
	r.bufs = make([]byte, rxBatch*2048)
	for i := range r.msgs {
		r.iovs[i].Base = &r.bufs[i*2048]
		r.iovs[i].SetLen(2048)
		r.msgs[i].Hdr.Iov = &r.iovs[i]
		r.msgs[i].Hdr.SetIovlen(1)
	}
	r.fn = func(fd uintptr) bool {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(r.batch), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return false
		}
		if e == 0 {
			r.got = int(n)
			if r.each != nil {
				for i := range r.got {
					r.each(r.bufs[i*2048:][:r.msgs[i].Len])
				}
			}
		}
		return true
	}
}

// newIdleReceiver is a receiver that reads only when its owner calls drain. Its socket is a bare descriptor,
// outside the runtime's netpoller, so that a datagram arriving while nobody reads costs the sender no wake-up.
func newIdleReceiver(tb testing.TB, fl *flow) *receiver {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	r := &receiver{fd: fd, ap: netip.AddrPortFrom(netip.AddrFrom4(sa.(*unix.SockaddrInet4).Addr), uint16(sa.(*unix.SockaddrInet4).Port))}
	r.init(fl)
	return r
}

// drain reads an idle receiver until n datagrams arrived or none came for 200 ms, and returns how many did.
func (r *receiver) drain(n int) int {
	got, since := 0, time.Now()
	for got < n {
		r.got = 0
		if !r.fn(uintptr(r.fd)) { // nothing queued yet: the rest is still on its way
			if time.Since(since) > 200*time.Millisecond {
				break
			}
			time.Sleep(20 * time.Microsecond)
			continue
		}
		got += r.got
		since = time.Now()
	}
	r.fl.received(int64(got))
	return got
}

func (r *receiver) addr() netip.AddrPort { return r.ap }

func (r *receiver) run() {
	for {
		r.got = 0
		if err := r.raw.Read(r.fn); err != nil {
			return
		}
		if r.got > 0 {
			r.fl.received(int64(r.got))
		}
	}
}

// flow keeps at most window forwarded datagrams in flight: the publisher blocks (without spinning, so that the
// CPU figures stay clean) until the receivers caught up.
type flow struct {
	window  int64
	recv    atomic.Int64
	target  atomic.Int64
	waiting atomic.Bool
	wake    chan struct{}
	timer   *time.Timer
	lost    int64 // given up on (publisher goroutine)
}

func newFlow(subs int) *flow {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &flow{wake: make(chan struct{}, 1), timer: t, window: int64(min(window, pubWindow*subs))}
}

func (f *flow) received(n int64) {
	if v := f.recv.Add(n); f.waiting.Load() && v >= f.target.Load() && f.waiting.CompareAndSwap(true, false) {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// admit waits until fewer than window datagrams of the expected total are in flight; what has not arrived
// after 200 ms counts as lost.
func (f *flow) admit(expected int64) {
	if expected-f.lost-f.recv.Load() <= f.window {
		return
	}
	f.target.Store(expected - f.lost - f.window/2)
	f.waiting.Store(true)
	if f.recv.Load() >= f.target.Load() {
		f.waiting.Store(false)
		return
	}
	f.timer.Reset(200 * time.Millisecond)
	select {
	case <-f.wake:
		f.timer.Stop()
	case <-f.timer.C:
		f.waiting.Store(false)
		f.lost = expected - f.recv.Load()
	}
	select { // a late wake-up
	case <-f.wake:
	default:
	}
}

// drain waits until every expected datagram arrived (or 1 s without progress) and returns the count lost.
func (f *flow) drain(expected int64) int64 {
	last, since := f.recv.Load(), time.Now()
	for f.recv.Load() < expected && time.Since(since) < time.Second {
		time.Sleep(time.Millisecond)
		if v := f.recv.Load(); v != last {
			last, since = v, time.Now()
		}
	}
	return expected - f.recv.Load()
}

// result is one sub-benchmark's figures, for the summary TestMain prints.
type result struct {
	fwd             int64
	lost            int64
	nsPerFwd        float64
	cpuPerFwd       float64 // process CPU
	serverCPUPerFwd float64 // the server's share (pprof labels), 0 if unknown
	allocsPerFwd    float64
}

func (r result) perCoreSecond() float64 {
	c := r.serverCPUPerFwd
	if c == 0 {
		c = r.cpuPerFwd
	}
	return 1e9 / c
}

var results = map[string]result{}

// measure runs the publisher for b.N packets against a prepared server and reports the figures. warm is sent
// first (a keyframe so every player starts) and waited for.
func measure(b *testing.B, subs int, pub func(), fl *flow) result {
	return measureWith(b, subs, pub, fl, nil)
}

// measureWith is measure for a sender that buffers: flush, if not nil, sends what it holds, after the warm-up
// and after the measured loop.
func measureWith(b *testing.B, subs int, pub func(), fl *flow, flush func()) result {
	b.Helper()
	pub() // the first keyframe
	if lost := fl.drain(int64(subs)); lost != 0 {
		b.Fatalf("warm-up: %d of %d players got the keyframe", int64(subs)-lost, subs)
	}
	// Steady state: the track's ring (the NACK cache, 1024 packets) full, the buffer pool grown to match.
	for i := int64(2); i <= warmPackets; i++ {
		fl.admit(i * int64(subs))
		pub()
	}
	if flush != nil {
		flush()
	}
	fl.drain(warmPackets * int64(subs))
	fl.recv.Store(0)
	fl.lost = 0
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	cpu0, irq0 := cpuTime(), softirqTime()
	start := time.Now()
	sent := int64(0)
	b.ResetTimer()
	b.ReportAllocs()
	for b.Loop() {
		fl.admit((sent + 1) * int64(subs))
		pub()
		sent++
	}
	if flush != nil {
		flush()
	}
	lost := fl.drain(sent * int64(subs))
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	irq := softirqTime() - irq0
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	fwd := fl.recv.Load()
	if fwd == 0 {
		b.Fatal("nothing forwarded")
	}
	r := result{
		fwd: fwd, lost: lost,
		nsPerFwd:     float64(elapsed.Nanoseconds()) / float64(fwd),
		cpuPerFwd:    float64(cpu.Nanoseconds()) / float64(fwd),
		allocsPerFwd: float64(ms1.Mallocs-ms0.Mallocs) / float64(fwd),
	}
	profiling := false
	if *srvCPU {
		r.serverCPUPerFwd, profiling = profiledPhase(b, subs, sent, pub, fl, flush)
	}
	b.ReportMetric(float64(fwd)/elapsed.Seconds(), "fwd/s")
	b.ReportMetric(r.nsPerFwd, "ns/fwd")
	b.ReportMetric(r.cpuPerFwd, "cpu-ns/fwd")
	if profiling {
		b.ReportMetric(r.serverCPUPerFwd, "srv-cpu-ns/fwd")
	}
	b.ReportMetric(r.allocsPerFwd, "allocs/fwd")
	b.ReportMetric(float64(irq.Nanoseconds())/float64(fwd), "softirq-ns/fwd")
	b.ReportMetric(float64(lost)/float64(sent*int64(subs))*100, "loss%")
	results[b.Name()] = r
	return r
}

// profiledPhase sends as many packets again as the measured loop did, with the CPU profiler on, and returns the
// server's CPU per forwarded packet: the process CPU of the phase × the share of its samples in goroutines
// labelled role=server. The measured loop runs without the profiler, whose own allocations would show in
// allocs/fwd.
func profiledPhase(b *testing.B, subs int, sent int64, pub func(), fl *flow, flush func()) (float64, bool) {
	prof, ok := startProfile()
	if !ok {
		return 0, false
	}
	recv0, cpu0 := fl.recv.Load(), cpuTime()
	for i := range sent {
		fl.admit((sent + i + 1) * int64(subs))
		pub()
	}
	if flush != nil {
		flush()
	}
	fl.drain(2 * sent * int64(subs))
	cpu := cpuTime() - cpu0
	share := stopProfile(prof)
	fwd := fl.recv.Load() - recv0
	if fwd == 0 {
		b.Fatal("nothing forwarded while profiling")
	}
	return float64(cpu.Nanoseconds()) / float64(fwd) * share, true
}

var srvCPU = flag.Bool("srvcpu", false, "after each measurement, send as many packets again with the CPU profiler "+
	"on, to report the server's share of the CPU (srv-cpu-ns/fwd, used by the summary and the bound)")

// softirqTime is the machine's time in softirqs (/proc/stat), where loopback delivers a sent datagram to its
// receiving socket and which no process is charged for; 0 where unknown.
func softirqTime() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	v, _ := strconv.ParseInt(f[7], 10, 64)
	return time.Duration(v) * 10 * time.Millisecond // USER_HZ = 100
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCtx labels the goroutines of the server under test (and those they start), so that the CPU profile
// taken during the measurement tells the server's share of the process CPU from the publisher's and players'.
func asServer(f func(ctx context.Context)) {
	pprof.Do(context.Background(), pprof.Labels("role", "server"), f)
}

func startProfile() (*bytes.Buffer, bool) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		return nil, false // -cpuprofile is on
	}
	return &buf, true
}

// stopProfile returns the share of the sampled CPU time spent in goroutines labelled role=server.
func stopProfile(buf *bytes.Buffer) float64 {
	pprof.StopCPUProfile()
	p, err := profile.Parse(buf)
	if err != nil {
		return 0
	}
	var all, server int64
	for _, s := range p.Sample {
		v := s.Value[len(s.Value)-1]
		all += v
		if l := s.Label["role"]; len(l) == 1 && l[0] == "server" {
			server += v
		}
	}
	if all == 0 {
		return 0
	}
	return float64(server) / float64(all)
}

func subName(n int) string { return fmt.Sprint("subs=", n) }
