package ice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/packet"
)

// keeper records the SRTP datagrams it gets; every other one it keeps (Retain), so that the reader must
// replace that buffer before the next read.
type keeper struct {
	mu   sync.Mutex
	got  [][]byte
	kept []*packet.Buffer
	from []netip.AddrPort
	n    int
	all  chan struct{}
	want int
}

func (k *keeper) HandleDTLS([]byte, netip.AddrPort)          {}
func (k *keeper) HandleSRTCP(*packet.Buffer, netip.AddrPort) {}
func (k *keeper) HandleSRTP(p *packet.Buffer, from netip.AddrPort) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.got = append(k.got, bytes.Clone(p.Bytes()))
	k.from = append(k.from, from)
	if k.n%2 == 0 {
		p.Retain()
		k.kept = append(k.kept, p)
	}
	k.n++
	if k.n == k.want {
		close(k.all)
	}
}

func datagram(i int) []byte {
	b := make([]byte, 100+i%1100)
	b[0], b[1] = 0x80, 96
	for j := 2; j < len(b); j++ {
		b[j] = byte(i + j)
	}
	return b
}

// TestServeRead sends datagrams of many sizes through both read paths (recvmmsg batches, one read per
// datagram) and checks that each arrives intact, in order, from its sender, and that buffers a handler kept
// are not overwritten by later reads.
func TestServeRead(t *testing.T) {
	for _, batch := range []int{1, 4, DefaultRecvBatch} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			const total = 500
			s, err := Listen(SocketConfig{Addr: loopback, RecvBatch: batch, ReadBuffer: 4 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			txAddr := tx.LocalAddr().(*net.UDPAddr).AddrPort()
			k := &keeper{all: make(chan struct{}), want: total}
			a, err := s.newFixedAgent(txAddr, k)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx) }()
			for i := range total {
				if _, err := tx.WriteToUDPAddrPort(datagram(i), s.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-k.all:
			case <-time.After(10 * time.Second):
				t.Fatalf("got %d of %d datagrams", k.n, total)
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Serve: %v, want context.Canceled", err)
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			for i, b := range k.got {
				if !bytes.Equal(b, datagram(i)) {
					t.Fatalf("datagram %d: wrong content or order (%d bytes)", i, len(b))
				}
				if k.from[i] != txAddr {
					t.Fatalf("datagram %d from %v, want %v", i, k.from[i], txAddr)
				}
			}
			for j, p := range k.kept {
				if !bytes.Equal(p.Bytes(), datagram(2*j)) {
					t.Fatalf("kept datagram %d overwritten", 2*j)
				}
				p.Release()
			}
			if st := s.Stats(); st.Datagrams != total || st.SRTP != total {
				t.Fatalf("stats: %+v", st)
			}
		})
	}
}

// TestServeReadAllocs checks that both read paths allocate nothing per datagram in steady state (handlers
// that keep nothing).
func TestServeReadAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	for _, batch := range []int{1, DefaultRecvBatch} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			const total = 20000
			s, err := Listen(SocketConfig{Addr: loopback, RecvBatch: batch, ReadBuffer: 8 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			a, err := s.newFixedAgent(tx.LocalAddr().(*net.UDPAddr).AddrPort(), nopEndpoint{})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			go func() { _ = s.Serve(context.Background()) }()
			pkt := datagram(1000)
			send := func(n int) {
				for range n {
					if _, err := tx.WriteToUDPAddrPort(pkt, s.LocalAddr()); err != nil {
						t.Error(err)
						return
					}
				}
				for deadline := time.Now().Add(5 * time.Second); s.Stats().SRTP < s.Stats().Datagrams ||
					s.Stats().Datagrams == 0; {
					if time.Now().After(deadline) {
						t.Fatal("not delivered")
					}
					runtime.Gosched()
				}
			}
			send(100) // warm-up
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			before := s.Stats().Datagrams
			send(total)
			time.Sleep(50 * time.Millisecond) // let the reader finish what it holds
			runtime.ReadMemStats(&m1)
			got := s.Stats().Datagrams - before
			if per := float64(m1.Mallocs-m0.Mallocs) / float64(got); per > 0.01 {
				t.Fatalf("%.3f allocs per datagram (%d datagrams)", per, got)
			}
		})
	}
}

var raceEnabled bool // set by race_test.go under -race

// BenchmarkServeRead is the cost of the read loop per datagram, one read per datagram against recvmmsg
// batches: the CPU of the whole process per datagram delivered, with the same sender (sendmmsg of 64, at most
// 1024 datagrams in flight) for both.
func BenchmarkServeRead(b *testing.B) {
	for _, batch := range []int{1, DefaultRecvBatch} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			s, err := Listen(SocketConfig{Addr: loopback, RecvBatch: batch, ReadBuffer: 8 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			tx, err := Listen(SocketConfig{Addr: loopback, NoGSO: true, WriteBuffer: 8 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Close()
			a, err := s.newFixedAgent(tx.LocalAddr(), nopEndpoint{})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			go func() { _ = s.Serve(context.Background()) }()
			bt := tx.NewBatch()
			pkt := datagram(1144) // 1244 bytes
			sent := uint64(0)
			send := func() {
				for sent-s.Stats().SRTP > 1024 {
					time.Sleep(20 * time.Microsecond)
				}
				_ = bt.Queue(copy(bt.Buf()[:len(pkt)], pkt), s.LocalAddr())
				sent++
				if sent%64 == 0 {
					_ = bt.Flush()
				}
			}
			for range 1000 {
				send()
			}
			_ = bt.Flush()
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			got0 := s.Stats().SRTP
			b.ReportAllocs()
			for b.Loop() {
				send()
			}
			_ = bt.Flush()
			for deadline := time.Now().Add(time.Second); s.Stats().SRTP < sent && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			got := s.Stats().SRTP - got0
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(got), "cpu-ns/datagram")
		})
	}
}
