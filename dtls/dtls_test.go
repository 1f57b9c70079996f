package dtls

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	pionfp "github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	pionsrtp "github.com/pion/srtp/v3"
)

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()

	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// udpPair returns two loopback UDP sockets that know each other's address.
func udpPair(t *testing.T) (a, b net.PacketConn) {
	t.Helper()
	a, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err = net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		_ = a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })

	return a, b
}

func mustCert(t *testing.T) *Certificate {
	t.Helper()
	c, err := GenerateCertificate()
	if err != nil {
		t.Fatal(err)
	}

	return c
}

type result struct {
	conn *Conn
	keys Keys
	err  error
}

func goHandshake(ctx context.Context, conn net.PacketConn, remote net.Addr, cfg HandshakeConfig) <-chan result {
	ch := make(chan result, 1)
	go func() {
		c, k, err := Handshake(ctx, conn, remote, cfg)
		ch <- result{c, k, err}
	}()

	return ch
}

func TestHandshakeKeysCrossMatch(t *testing.T) {
	srvCert, cliCert := mustCert(t), mustCert(t)
	sConn, cConn := udpPair(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	srvCh := goHandshake(ctx, sConn, cConn.LocalAddr(), HandshakeConfig{
		Certificate: srvCert, Role: RoleServer, RemoteFingerprint: "sha-256 " + cliCert.Fingerprint(), Logger: testLogger(t),
	})
	// The bare value, in lower case, means sha-256 too.
	cliCh := goHandshake(ctx, cConn, sConn.LocalAddr(), HandshakeConfig{
		Certificate: cliCert, Role: RoleClient, RemoteFingerprint: strings.ToLower(srvCert.Fingerprint()), Logger: testLogger(t),
	})
	srv, cli := <-srvCh, <-cliCh
	if srv.err != nil || cli.err != nil {
		t.Fatalf("server err %v, client err %v", srv.err, cli.err)
	}

	if srv.keys.Profile != ProfileAEADAES128GCM || cli.keys.Profile != ProfileAEADAES128GCM {
		t.Fatalf("profiles %#04x/%#04x, want AEAD_AES_128_GCM", srv.keys.Profile, cli.keys.Profile)
	}
	if len(srv.keys.LocalKey) != 16 || len(srv.keys.LocalSalt) != 12 ||
		len(srv.keys.RemoteKey) != 16 || len(srv.keys.RemoteSalt) != 12 {
		t.Fatalf("key/salt lengths: %+v", srv.keys)
	}
	if !bytes.Equal(cli.keys.LocalKey, srv.keys.RemoteKey) || !bytes.Equal(cli.keys.LocalSalt, srv.keys.RemoteSalt) ||
		!bytes.Equal(cli.keys.RemoteKey, srv.keys.LocalKey) || !bytes.Equal(cli.keys.RemoteSalt, srv.keys.LocalSalt) {
		t.Fatal("client and server keys do not cross-match")
	}
	if bytes.Equal(srv.keys.LocalKey, srv.keys.RemoteKey) {
		t.Fatal("local and remote keys are equal")
	}

	// The client closing (close_notify) ends the server's association.
	if err := cli.conn.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.conn.Done():
	case <-ctx.Done():
		t.Fatal("server did not notice close_notify")
	}
	if !errors.Is(srv.conn.Err(), ErrPeerClosed) {
		t.Fatalf("server Err = %v, want ErrPeerClosed", srv.conn.Err())
	}
	if cli.conn.Err() != nil {
		t.Fatalf("client Err after local Close = %v, want nil", cli.conn.Err())
	}
	if err := srv.conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cli.conn.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestHandshakeFingerprintMismatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing Role // the side given a wrong fingerprint
	}{
		{"server verifies client", RoleServer},
		{"client verifies server", RoleClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvCert, cliCert, other := mustCert(t), mustCert(t), mustCert(t)
			sConn, cConn := udpPair(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			srvFP, cliFP := cliCert.Fingerprint(), srvCert.Fingerprint()
			if tc.failing == RoleServer {
				srvFP = other.Fingerprint()
			} else {
				cliFP = other.Fingerprint()
			}
			srvCh := goHandshake(ctx, sConn, cConn.LocalAddr(), HandshakeConfig{
				Certificate: srvCert, Role: RoleServer, RemoteFingerprint: srvFP, Logger: testLogger(t),
			})
			cliCh := goHandshake(ctx, cConn, sConn.LocalAddr(), HandshakeConfig{
				Certificate: cliCert, Role: RoleClient, RemoteFingerprint: cliFP, Logger: testLogger(t),
			})
			srv, cli := <-srvCh, <-cliCh
			failed, other2 := srv, cli
			if tc.failing == RoleClient {
				failed, other2 = cli, srv
			}
			if !errors.Is(failed.err, ErrFingerprint) {
				t.Fatalf("err = %v, want ErrFingerprint", failed.err)
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Fatal("mismatch was only noticed at the deadline")
			}
			t.Logf("failing side: %v", failed.err)
			t.Logf("other side: %v", other2.err)
			if other2.conn != nil {
				_ = other2.conn.Close()
			}
		})
	}
}

func TestHandshakeSilentPeerHonoursContext(t *testing.T) {
	for _, role := range []Role{RoleClient, RoleServer} {
		t.Run(role.String(), func(t *testing.T) {
			conn, silent := udpPair(t)
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, _, err := Handshake(ctx, conn, silent.LocalAddr(), HandshakeConfig{
				Certificate: mustCert(t), Role: role, RemoteFingerprint: mustCert(t).Fingerprint(), Logger: testLogger(t),
			})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want context.DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("Handshake returned after %v", d)
			}
		})
	}
}

// pionClient runs a pion/dtls client configured like a browser (pion/webrtc
// defaults): it offers AES_256_GCM, AES_128_GCM, then CM-HMAC-80.
func pionClient(ctx context.Context, t *testing.T, conn net.PacketConn, remote net.Addr, cert *Certificate,
	serverFP string, profiles ...piondtls.SRTPProtectionProfile,
) (*piondtls.Conn, error) {
	t.Helper()
	dc, err := piondtls.ClientWithOptions(conn, remote,
		piondtls.WithCertificates(cert.TLSCertificate()),
		piondtls.WithSRTPProtectionProfiles(profiles...),
		piondtls.WithInsecureSkipVerify(true),
		piondtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			fp, err := pionfp.Fingerprint(c, crypto.SHA256)
			if err != nil {
				return err
			}
			if !strings.EqualFold(fp, serverFP) {
				return errors.New("server fingerprint mismatch")
			}

			return nil
		}),
	)
	if err != nil {
		return nil, err
	}
	if err := dc.HandshakeContext(ctx); err != nil {
		_ = dc.Close()

		return nil, err
	}

	return dc, nil
}

func TestInteropPionClient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		offered  []piondtls.SRTPProtectionProfile
		want     uint16
		key, slt int
	}{
		{
			"browser-like offer, our order wins",
			[]piondtls.SRTPProtectionProfile{
				piondtls.SRTP_AEAD_AES_256_GCM, piondtls.SRTP_AEAD_AES_128_GCM, piondtls.SRTP_AES128_CM_HMAC_SHA1_80,
			},
			ProfileAEADAES128GCM, 16, 12,
		},
		{
			"CM-HMAC-80 only",
			[]piondtls.SRTPProtectionProfile{piondtls.SRTP_AES128_CM_HMAC_SHA1_80},
			ProfileAES128CMHMACSHA180, 16, 14,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvCert, cliCert := mustCert(t), mustCert(t)
			sConn, cConn := udpPair(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			srvCh := goHandshake(ctx, sConn, cConn.LocalAddr(), HandshakeConfig{
				Certificate: srvCert, Role: RoleServer, RemoteFingerprint: "SHA-256 " + cliCert.Fingerprint(), Logger: testLogger(t),
			})
			dc, err := pionClient(ctx, t, cConn, sConn.LocalAddr(), cliCert, srvCert.Fingerprint(), tc.offered...)
			srv := <-srvCh
			if err != nil || srv.err != nil {
				t.Fatalf("pion client err %v, our server err %v", err, srv.err)
			}
			defer func() { _ = dc.Close() }()
			defer func() { _ = srv.conn.Close() }()

			if srv.keys.Profile != tc.want {
				t.Fatalf("profile %#04x, want %#04x", srv.keys.Profile, tc.want)
			}
			p, _ := dc.SelectedSRTPProtectionProfile()
			if uint16(p) != tc.want {
				t.Fatalf("pion client selected %#04x, want %#04x", uint16(p), tc.want)
			}
			if len(srv.keys.LocalKey) != tc.key || len(srv.keys.LocalSalt) != tc.slt {
				t.Fatalf("key/salt len %d/%d, want %d/%d", len(srv.keys.LocalKey), len(srv.keys.LocalSalt), tc.key, tc.slt)
			}
			// pion/srtp's own extraction on the client must mirror our keys.
			state, _ := dc.ConnectionState()
			cfg := pionsrtp.Config{Profile: pionsrtp.ProtectionProfile(p)}
			if err := cfg.ExtractSessionKeysFromDTLS(&state, true); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cfg.Keys.LocalMasterKey, srv.keys.RemoteKey) ||
				!bytes.Equal(cfg.Keys.LocalMasterSalt, srv.keys.RemoteSalt) ||
				!bytes.Equal(cfg.Keys.RemoteMasterKey, srv.keys.LocalKey) ||
				!bytes.Equal(cfg.Keys.RemoteMasterSalt, srv.keys.LocalSalt) {
				t.Fatal("keys differ from pion/srtp's ExtractSessionKeysFromDTLS")
			}

			// The pion client closing ends our association.
			_ = dc.Close()
			select {
			case <-srv.conn.Done():
			case <-ctx.Done():
				t.Fatal("server did not notice the close")
			}
		})
	}
}

func TestInteropPionClientRejectsWithoutCert(t *testing.T) {
	srvCert := mustCert(t)
	sConn, cConn := udpPair(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	srvCh := goHandshake(ctx, sConn, cConn.LocalAddr(), HandshakeConfig{
		Certificate: srvCert, Role: RoleServer, RemoteFingerprint: mustCert(t).Fingerprint(), Logger: testLogger(t),
	})
	dc, err := piondtls.ClientWithOptions(cConn, sConn.LocalAddr(),
		piondtls.WithSRTPProtectionProfiles(piondtls.SRTP_AEAD_AES_128_GCM),
		piondtls.WithInsecureSkipVerify(true))
	if err != nil {
		t.Fatal(err)
	}
	_ = dc.HandshakeContext(ctx)
	_ = dc.Close()
	srv := <-srvCh
	if srv.err == nil {
		srv.conn.Close()
		t.Fatal("server accepted a client without certificate")
	}
}

func TestParseFingerprint(t *testing.T) {
	c := mustCert(t)
	der := c.TLSCertificate().Certificate[0]
	sha1FP := formatFingerprint(fingerprint{hash: crypto.SHA1}.sum(der))
	sha384FP := formatFingerprint(fingerprint{hash: crypto.SHA384}.sum(der))
	sha512FP := formatFingerprint(fingerprint{hash: crypto.SHA512}.sum(der))

	for _, tc := range []struct {
		in    string
		ok    bool
		match bool
	}{
		{c.Fingerprint(), true, true},
		{"sha-256 " + c.Fingerprint(), true, true},
		{"SHA-256 " + strings.ToLower(c.Fingerprint()), true, true},
		{"  sha-256   " + c.Fingerprint() + " ", true, true},
		{"sha-1 " + sha1FP, true, true},
		{"sha-384 " + sha384FP, true, true},
		{"sha-512 " + sha512FP, true, true},
		{"sha-256 " + mustCert(t).Fingerprint(), true, false},
		{"", false, false},
		{"sha-256", false, false},
		{"md5 AA:BB", false, false},
		{"sha-256 " + c.Fingerprint()[3:], false, false},
		{"sha-256 " + strings.ReplaceAll(c.Fingerprint(), ":", ""), false, false},
		{"sha-1 " + c.Fingerprint(), false, false},
		{"sha-256 ZZ" + c.Fingerprint()[2:], false, false},
	} {
		fp, err := parseFingerprint(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("parseFingerprint(%q) err = %v, want ok=%v", tc.in, err, tc.ok)

			continue
		}
		if err != nil {
			if !errors.Is(err, ErrFingerprint) {
				t.Errorf("parseFingerprint(%q) err %v does not wrap ErrFingerprint", tc.in, err)
			}

			continue
		}
		if got := bytes.Equal(fp.sum(der), fp.digest); got != tc.match {
			t.Errorf("parseFingerprint(%q) match = %v, want %v", tc.in, got, tc.match)
		}
	}
}

func TestCertificateFingerprintMatchesPion(t *testing.T) {
	c := mustCert(t)
	fp, err := pionfp.Fingerprint(c.TLSCertificate().Leaf, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if c.Fingerprint() != strings.ToUpper(fp) || len(c.Fingerprint()) != 32*3-1 {
		t.Fatalf("Fingerprint %q, pion %q", c.Fingerprint(), fp)
	}
	if _, ok := c.TLSCertificate().PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Fatal("not an ECDSA key")
	}
	if d := time.Until(c.NotAfter()); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Fatalf("validity %v", d)
	}
}

func TestLoadCertificate(t *testing.T) {
	c := mustCert(t)
	dir := t.TempDir()
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.TLSCertificate().PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.TLSCertificate().Certificate[0]})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if l.Fingerprint() != c.Fingerprint() {
		t.Fatalf("loaded fingerprint %s, want %s", l.Fingerprint(), c.Fingerprint())
	}
	if _, err := LoadCertificate(keyFile, certFile); err == nil {
		t.Fatal("swapped files loaded")
	}
	if _, err := LoadCertificate(filepath.Join(dir, "missing"), keyFile); err == nil {
		t.Fatal("missing file loaded")
	}
}

func TestHandshakeBadConfig(t *testing.T) {
	a, b := udpPair(t)
	for _, cfg := range []HandshakeConfig{
		{Certificate: nil, RemoteFingerprint: mustCert(t).Fingerprint()},
		{Certificate: mustCert(t), RemoteFingerprint: ""},
		{Certificate: mustCert(t), Role: Role(7), RemoteFingerprint: mustCert(t).Fingerprint()},
	} {
		if _, _, err := Handshake(t.Context(), a, b.LocalAddr(), cfg); err == nil {
			t.Errorf("Handshake(%+v) succeeded", cfg)
		}
	}
}

// TestInteropPionServer: we are the DTLS client (a=setup:active) against a
// pion/dtls server configured like pion/webrtc (AES_256_GCM first); we do not
// offer 256, so AES_128_GCM is chosen.
func TestInteropPionServer(t *testing.T) {
	srvCert, cliCert := mustCert(t), mustCert(t)
	sConn, cConn := udpPair(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	type srvResult struct {
		dc  *piondtls.Conn
		err error
	}
	srvCh := make(chan srvResult, 1)
	go func() {
		dc, err := piondtls.ServerWithOptions(sConn, cConn.LocalAddr(),
			piondtls.WithCertificates(srvCert.TLSCertificate()),
			piondtls.WithSRTPProtectionProfiles(piondtls.SRTP_AEAD_AES_256_GCM, piondtls.SRTP_AEAD_AES_128_GCM,
				piondtls.SRTP_AES128_CM_HMAC_SHA1_80),
			piondtls.WithClientAuth(piondtls.RequireAnyClientCert),
			piondtls.WithInsecureSkipVerify(true),
			piondtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
				c, err := x509.ParseCertificate(raw[0])
				if err != nil {
					return err
				}
				if fp, _ := pionfp.Fingerprint(c, crypto.SHA256); !strings.EqualFold(fp, cliCert.Fingerprint()) {
					return errors.New("client fingerprint mismatch")
				}

				return nil
			}))
		if err == nil {
			err = dc.HandshakeContext(ctx)
		}
		srvCh <- srvResult{dc, err}
	}()
	conn, keys, err := Handshake(ctx, cConn, sConn.LocalAddr(), HandshakeConfig{
		Certificate: cliCert, Role: RoleClient, RemoteFingerprint: "sha-256 " + srvCert.Fingerprint(), Logger: testLogger(t),
	})
	srv := <-srvCh
	if err != nil || srv.err != nil {
		t.Fatalf("our client err %v, pion server err %v", err, srv.err)
	}
	defer func() { _ = srv.dc.Close() }()
	defer func() { _ = conn.Close() }()
	if keys.Profile != ProfileAEADAES128GCM {
		t.Fatalf("profile %#04x", keys.Profile)
	}
	state, _ := srv.dc.ConnectionState()
	cfg := pionsrtp.Config{Profile: pionsrtp.ProtectionProfileAeadAes128Gcm}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, false); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cfg.Keys.LocalMasterKey, keys.RemoteKey) || !bytes.Equal(cfg.Keys.RemoteMasterSalt, keys.LocalSalt) {
		t.Fatal("keys differ from pion/srtp's extraction on the server")
	}
}
