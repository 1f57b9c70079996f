package ice

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// connectPair connects a lite agent on sa with a controlling one on sb.
func connectPair(t *testing.T, sa, sb *Socket, lcfg AgentConfig) (lite, ctl *Agent) {
	t.Helper()
	lcfg.Lite = true
	lite, err := sa.NewAgent(lcfg, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lite.Close() })
	ctl, err = sb.NewAgent(AgentConfig{Controlling: true}, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	lu, lp := lite.LocalCredentials()
	cu, cp := ctl.LocalCredentials()
	lite.SetRemote(cu, cp, nil, false)
	ctl.SetRemote(lu, lp, lite.LocalCandidates(), true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var liteErr error
	wg.Go(func() { _, liteErr = lite.Connect(ctx) })
	if _, err := ctl.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if liteErr != nil {
		t.Fatal(liteErr)
	}
	return lite, ctl
}

type useCandidate struct{}

func (useCandidate) AddTo(m *stun.Message) error { m.Add(stun.AttrUseCandidate, nil); return nil }

// check sends a binding request from c to the agent's socket and returns the response, nil if none came.
func check(t *testing.T, c *net.UDPConn, to netip.AddrPort, username, pwd string, nominate bool) *stun.Message {
	t.Helper()
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewUsername(username)}
	if nominate {
		setters = append(setters, useCandidate{})
	}
	setters = append(setters, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	req := stun.MustBuild(setters...)
	if _, err := c.WriteToUDPAddrPort(req.Raw, to); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	resp := &stun.Message{Raw: buf[:n]}
	if err := resp.Decode(); err != nil {
		t.Fatalf("response: %v", err)
	}
	if resp.TransactionID != req.TransactionID {
		t.Fatal("response to another transaction")
	}
	return resp
}

// TestSettle: a settled lite agent answers valid checks itself (integrity, XOR-MAPPED-ADDRESS), ignores forged
// ones, follows a nomination, keeps the controlling peer connected, and fails once the checks stop.
func TestSettle(t *testing.T) {
	sa := serve(t, SocketConfig{Addr: loopback})
	sb := serve(t, SocketConfig{Addr: loopback})
	lite, ctl := connectPair(t, sa, sb, AgentConfig{DisconnectedTimeout: time.Second, FailedTimeout: time.Second})
	if !lite.Settle() || lite.Settle() {
		t.Fatal("Settle: want true once")
	}
	if ctl.Settle() {
		t.Fatal("a controlling agent settled")
	}
	st := lite.settle.Load()
	lu, lp := lite.LocalCredentials()
	cu, _ := ctl.LocalCredentials()

	peer, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if resp := check(t, peer, sa.LocalAddr(), lu+":"+cu, "wrong-password-0123456789", false); resp != nil {
		t.Fatal("answered a check with a wrong MESSAGE-INTEGRITY")
	}
	if resp := check(t, peer, sa.LocalAddr(), lu+":other", lp, false); resp != nil {
		t.Fatal("answered a check with a foreign USERNAME")
	}
	resp := check(t, peer, sa.LocalAddr(), lu+":"+cu, lp, false)
	if resp == nil || resp.Type != stun.BindingSuccess {
		t.Fatalf("no success response: %v", resp)
	}
	if err := stun.NewShortTermIntegrity(lp).Check(resp); err != nil {
		t.Fatalf("response integrity: %v", err)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(resp); err != nil || xor.Port != int(peerAddr.Port()) {
		t.Fatalf("XOR-MAPPED-ADDRESS %v %v, want %v", xor, err, peerAddr)
	}
	if (*sa.bindings.Load())[peerAddr] == nil {
		t.Fatal("checked address not bound")
	}
	if lite.Remote() == peerAddr {
		t.Fatal("remote moved without a nomination")
	}
	if check(t, peer, sa.LocalAddr(), lu+":"+cu, lp, true) == nil || lite.Remote() != peerAddr {
		t.Fatalf("nomination not followed: remote %v", lite.Remote())
	}

	// The controlling pion agent's keepalive checks (every 2 s) keep the settled agent alive past its 2 s
	// consent timeout, and are answered.
	before := st.answered.Load()
	time.Sleep(3 * time.Second)
	if lite.Err() != nil || ctl.Err() != nil {
		t.Fatalf("lite %v, controlling %v", lite.Err(), ctl.Err())
	}
	if st.answered.Load() == before {
		t.Fatal("the controlling agent's checks were not answered")
	}
	ctl.Close()
	select {
	case <-lite.Done():
		if !errors.Is(lite.Err(), ErrFailed) {
			t.Fatalf("Err %v", lite.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("settled agent did not fail once the checks stopped")
	}
}
