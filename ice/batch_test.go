package ice

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestBatch sends runs of datagrams through a Batch (sendto, sendmmsg, sendmmsg+GSO) to two receivers and checks
// that each receives every datagram, intact, in order, with its own size.
func TestBatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch int
		bytes int // the slab; 0: the default
		noGSO bool
	}{{"sendto", 1, 0, true}, {"sendmmsg", 8, 0, true}, {"gso", 8, 0, false},
		// A slab with room for three datagrams of BatchSlotSize: it flushes by bytes before the slots run out.
		{"small-slab", 64, 3 * BatchSlotSize, true}, {"small-slab-gso", 64, 3 * BatchSlotSize, false}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Listen(SocketConfig{Addr: netip.MustParseAddrPort("127.0.0.1:0"), SendBatch: tc.batch,
				SendBatchBytes: tc.bytes, NoGSO: tc.noGSO})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var rx [2]*net.UDPConn
			for i := range rx {
				if rx[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
					t.Fatal(err)
				}
				defer rx[i].Close()
			}
			b := s.NewBatch()
			// Sizes per receiver: equal runs (coalescable), a shorter tail, a longer one that must start anew.
			sizes := []int{1000, 1000, 1000, 600, 1200, 1200, 100}
			var want [2][][]byte
			for k, n := range sizes {
				for r := range rx {
					buf := b.Buf()[:n]
					for i := range buf {
						buf[i] = byte(k*7 + r + i)
					}
					want[r] = append(want[r], bytes.Clone(buf))
					if err := b.Queue(n, rx[r].LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Also a run to one receiver alone, so that GSO has something to coalesce.
			for k := range 5 {
				buf := b.Buf()[:500]
				for i := range buf {
					buf[i] = byte(k + i)
				}
				want[0] = append(want[0], bytes.Clone(buf))
				if err := b.Queue(500, rx[0].LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Flush(); err != nil {
				t.Fatal(err)
			}
			for r := range rx {
				rx[r].SetReadDeadline(time.Now().Add(5 * time.Second))
				got := make([]byte, 2000)
				for k, w := range want[r] {
					n, err := rx[r].Read(got)
					if err != nil {
						t.Fatalf("receiver %d datagram %d: %v", r, k, err)
					}
					if !bytes.Equal(got[:n], w) {
						t.Fatalf("receiver %d datagram %d: got %d bytes, want %d (%s)", r, k, n, len(w), fmt.Sprint(got[:4], w[:4]))
					}
				}
			}
			st := s.Stats()
			if want := uint64(len(sizes)*2 + 5); st.Sent != want || st.WriteErrors != 0 {
				t.Fatalf("sent %d, errors %d; want %d, 0", st.Sent, st.WriteErrors, want)
			}
			if tc.name == "gso" && st.GSOMessages == 0 && st.GSOFailures == 0 {
				t.Fatal("GSO coalesced nothing")
			}
			if tc.bytes != 0 && st.Syscalls < 4 {
				t.Fatalf("%d sendmmsg calls for %d datagrams in a %d-byte slab: it did not flush by bytes", st.Syscalls, st.Sent, tc.bytes)
			}
			t.Logf("%+v", st.BatchStats)
		})
	}
}
