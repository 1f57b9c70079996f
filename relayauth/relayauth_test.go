package relayauth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const fp = "sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"

func newPair(t *testing.T, secret string, cfg Config) (*Signer, *Verifier, *time.Time) {
	t.Helper()
	s, err := NewSigner("origin-1", secret, fp)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, &now
}

func reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason()
	}
	return ""
}

func TestVerify(t *testing.T) {
	s, v, now := newPair(t, "cluster", Config{Secret: "cluster"})
	tok := s.Sign(*now)
	if err := v.Verify(tok); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	if err := v.Verify(tok); !errors.Is(err, ErrAuth) || !strings.Contains(reason(err), "replayed") {
		t.Fatalf("replay: %v", err)
	}
	// Another token of the same signer is fine (fresh nonce).
	if err := v.Verify(s.Sign(*now)); err != nil {
		t.Fatalf("second token: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	s, v, now := newPair(t, "cluster", Config{Secret: "cluster", Skew: time.Minute})
	other, _ := NewSigner("origin-1", "wrong", fp)
	cases := map[string]struct {
		tok  func() Token
		want string
	}{
		"wrong secret":   {func() Token { return other.Sign(*now) }, "bad signature"},
		"old":            {func() Token { return s.Sign(now.Add(-61 * time.Second)) }, "away from this server's clock"},
		"future":         {func() Token { return s.Sign(now.Add(61 * time.Second)) }, "away from this server's clock"},
		"changed server": {func() Token { t := s.Sign(*now); t.Server = "edge-9"; return t }, "bad signature"},
		"changed fp": {func() Token {
			t := s.Sign(*now)
			t.Fingerprint = strings.Replace(t.Fingerprint, "AB", "BA", 1)
			return t
		}, "bad signature"},
		"changed ts":     {func() Token { t := s.Sign(*now); t.TS++; return t }, "bad signature"},
		"empty":          {func() Token { return Token{} }, "bad server id"},
		"newline server": {func() Token { t := s.Sign(*now); t.Server = "a\nb"; return t }, "bad server id"},
		"short nonce":    {func() Token { t := s.Sign(*now); t.Nonce = "abcd"; return t }, "bad nonce"},
		"sig not hex":    {func() Token { t := s.Sign(*now); t.Sig = strings.Repeat("z", 64); return t }, "bad signature encoding"},
		"no fingerprint": {func() Token { t := s.Sign(*now); t.Fingerprint = ""; return t }, "bad fingerprint"},
	}
	for name, c := range cases {
		err := v.Verify(c.tok())
		if !errors.Is(err, ErrAuth) || !strings.Contains(reason(err), c.want) || !strings.HasPrefix(reason(err), InfoFailed) {
			t.Errorf("%s: %v (reason %q), want %q", name, err, reason(err), c.want)
		}
	}
	// Within the skew on both sides is fine.
	for _, d := range []time.Duration{-59 * time.Second, 59 * time.Second} {
		if err := v.Verify(s.Sign(now.Add(d))); err != nil {
			t.Errorf("token %v off: %v", d, err)
		}
	}
}

func TestPeers(t *testing.T) {
	// origin-1 has its own secret; the cluster secret no longer verifies it, but still verifies others.
	_, v, now := newPair(t, "x", Config{Secret: "cluster", Peers: map[string]string{"origin-1": "own"}})
	own, _ := NewSigner("origin-1", "own", fp)
	shared, _ := NewSigner("origin-1", "cluster", fp)
	edge, _ := NewSigner("edge-2", "cluster", fp)
	if err := v.Verify(own.Sign(*now)); err != nil {
		t.Errorf("peer with its own secret: %v", err)
	}
	if err := v.Verify(shared.Sign(*now)); !errors.Is(err, ErrAuth) {
		t.Errorf("listed peer signing with the cluster secret: %v, want refused", err)
	}
	if err := v.Verify(edge.Sign(*now)); err != nil {
		t.Errorf("unlisted server with the cluster secret: %v", err)
	}
	// Peers only: unknown servers are refused by name.
	_, vp, _ := newPair(t, "x", Config{Peers: map[string]string{"origin-1": "own"}})
	if err := vp.Verify(edge.Sign(*now)); !strings.Contains(reason(err), `unknown server "edge-2"`) {
		t.Errorf("unknown peer: %v", err)
	}
}

func TestNonceExpiry(t *testing.T) {
	s, v, now := newPair(t, "k", Config{Secret: "k", Skew: time.Second})
	for range 100 {
		if err := v.Verify(s.Sign(*now)); err != nil {
			t.Fatal(err)
		}
	}
	*now = now.Add(5 * time.Second)
	if err := v.Verify(s.Sign(*now)); err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	n := len(v.nonces)
	v.mu.Unlock()
	if n != 1 {
		t.Errorf("%d nonces remembered after they expired, want 1", n)
	}
}

func TestEncoding(t *testing.T) {
	s, v, now := newPair(t, "k", Config{Secret: "k"})
	tok := s.Sign(*now)
	got, err := Decode(tok.Encode())
	if err != nil || got != tok {
		t.Fatalf("Decode(Encode) = %+v, %v; want %+v", got, err, tok)
	}
	for _, bad := range []string{"", "!!!", "e30", strings.Repeat("A", 3000)} { // e30 = "{}"
		d, err := Decode(bad)
		if err == nil {
			err = v.Verify(d)
		}
		if !errors.Is(err, ErrAuth) {
			t.Errorf("Decode+Verify(%.20q): %v, want ErrAuth", bad, err)
		}
	}

	custom := tok.Custom(json.RawMessage(`{"app":"x"}`))
	ct, ok, err := FromCustom(custom)
	if !ok || err != nil || ct != tok {
		t.Fatalf("FromCustom = %+v %v %v", ct, ok, err)
	}
	if string(WithoutToken(custom)) != `{"app":"x"}` {
		t.Errorf("WithoutToken = %s", WithoutToken(custom))
	}
	for _, c := range []string{``, `[]`, `"s"`, `{"a":1}`} {
		if _, ok, err := FromCustom(json.RawMessage(c)); ok || err != nil {
			t.Errorf("FromCustom(%s) = %v %v, want no token", c, ok, err)
		}
	}
	if _, ok, err := FromCustom(json.RawMessage(`{"rtcrelayAuth":"x"}`)); !ok || !errors.Is(err, ErrAuth) {
		t.Errorf("FromCustom(bad token) = %v %v", ok, err)
	}
}

func TestCheckSDP(t *testing.T) {
	sdp := "v=0\r\na=fingerprint:" + strings.ToLower(fp) + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:" + fp + "\r\n"
	if err := CheckSDP(sdp, fp); err != nil {
		t.Errorf("matching SDP: %v", err)
	}
	other := strings.Replace(sdp, "AB:CD", "00:00", 1)
	if err := CheckSDP(other, fp); !errors.Is(err, ErrAuth) {
		t.Errorf("one other fingerprint: %v", err)
	}
	if err := CheckSDP(sdp, strings.TrimPrefix(fp, "sha-256 ")); err != nil {
		t.Errorf("a bare sha-256 hash (dtls.Certificate.Fingerprint): %v", err)
	}
	if err := CheckSDP(strings.ReplaceAll(sdp, "sha-256", "sha-1"), fp); !errors.Is(err, ErrAuth) {
		t.Errorf("same hex, other algorithm: %v", err)
	}
	if err := CheckSDP("v=0\r\n", fp); !errors.Is(err, ErrAuth) {
		t.Errorf("no fingerprint: %v", err)
	}
}

func TestErrorText(t *testing.T) {
	err := Required("the relay path needs a signed connection")
	if r := reason(err); r != "Relay authentication required: the relay path needs a signed connection" || !IsInfo(r) {
		t.Errorf("reason %q", r)
	}
	if !strings.HasPrefix(err.Error(), "relayauth: Relay authentication required") {
		t.Errorf("Error() = %q", err)
	}
	if IsInfo("Stream not found") {
		t.Error("IsInfo of another info")
	}
}

func TestCheckStart(t *testing.T) {
	tok := &Token{Fingerprint: fp}
	sdp := "a=fingerprint:" + fp + "\r\n"
	for _, c := range []struct {
		name             string
		relay            *Token
		require, hasPath bool
		sdp              string
		trust            bool
		want             string // reason prefix; "" for no error
	}{
		{"relay", tok, true, true, sdp, true, ""},
		{"relay, other fingerprint", tok, false, true, "a=fingerprint:sha-256 00\r\n", true, InfoFailed},
		{"client with a path, required", nil, true, true, sdp, false, InfoRequired},
		{"client with a path", nil, false, true, sdp, false, ""},
		{"client", nil, true, false, sdp, false, ""},
	} {
		trust, err := CheckStart(c.relay, c.require, c.hasPath, c.sdp)
		if (c.want == "") != (err == nil) || !strings.HasPrefix(reason(err), c.want) || (err == nil && trust != c.trust) {
			t.Errorf("%s: trust %v, err %v; want trust %v, reason %q", c.name, trust, err, c.trust, c.want)
		}
	}
}

// FuzzVerify: whatever arrives as a token (header or custom), Verify answers ErrAuth or nil, never panics, and
// nil only for a correctly signed one.
func FuzzVerify(f *testing.F) {
	s, _ := NewSigner("origin-1", "k", fp)
	now := time.Now()
	f.Add(s.Sign(now).Encode())
	f.Add(string(s.Sign(now).Custom(nil)))
	f.Add("")
	f.Add(`{"rtcrelayAuth":{"server":"a","ts":1,"nonce":"00","fingerprint":"x","sig":"00"}}`)
	f.Fuzz(func(t *testing.T, in string) {
		v, _ := NewVerifier(Config{Secret: "k"})
		for _, get := range []func() (Token, error){
			func() (Token, error) { return Decode(in) },
			func() (Token, error) { tok, _, err := FromCustom(json.RawMessage(in)); return tok, err },
		} {
			tok, err := get()
			if err == nil {
				err = v.Verify(tok)
			}
			if err != nil && !errors.Is(err, ErrAuth) {
				t.Fatalf("%q: %v does not wrap ErrAuth", in, err)
			}
			if err == nil && sign("k", &tok) != strings.ToLower(tok.Sig) {
				t.Fatalf("%q verified without a valid signature", in)
			}
		}
	})
}
