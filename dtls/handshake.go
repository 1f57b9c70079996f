// Package dtls runs the DTLS-SRTP handshake (RFC 5763/5764) of a media
// session over a net.PacketConn and exports the SRTP keys. It wraps
// github.com/pion/dtls/v3; the peer is authenticated by comparing its
// certificate with the fingerprint from its SDP, not by a CA.
package dtls

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	piondtls "github.com/pion/dtls/v3"
	pionsrtp "github.com/pion/srtp/v3"

	"github.com/rtcrelay/rtcrelay/pionlog"
)

// ErrFingerprint reports that the peer's certificate does not match the
// remote fingerprint (or that fingerprint is malformed or missing). Handshake
// errors wrap it; test with errors.Is.
var ErrFingerprint = errors.New("dtls: remote certificate fingerprint mismatch")

// ErrNoSRTPProfile reports that the handshake completed without negotiating
// one of the SRTP protection profiles we offer.
var ErrNoSRTPProfile = errors.New("dtls: no SRTP protection profile negotiated")

// Role is our side of the DTLS handshake. It follows a=setup: "passive" (we
// wait for the ClientHello) is RoleServer, "active" is RoleClient.
type Role int

// DTLS roles.
const (
	RoleServer Role = iota
	RoleClient
)

func (r Role) String() string {
	switch r {
	case RoleServer:
		return "server"
	case RoleClient:
		return "client"
	default:
		return fmt.Sprintf("Role(%d)", int(r))
	}
}

// SRTP protection profiles (IANA numbers) we negotiate, in our preference
// order. As the DTLS server our order wins.
const (
	ProfileAEADAES128GCM      uint16 = 0x0007
	ProfileAES128CMHMACSHA180 uint16 = 0x0001
)

// HandshakeConfig configures one DTLS-SRTP handshake.
type HandshakeConfig struct {
	Certificate *Certificate
	Role        Role
	// RemoteFingerprint is the peer's a=fingerprint: "sha-256 AA:BB:..",
	// or the bare value meaning sha-256. sha-1/224/384/512 are accepted too.
	RemoteFingerprint string
	Logger            *slog.Logger
}

// Keys are the SRTP master keys and salts exported from the handshake. Local
// protects what we send, Remote what we receive.
type Keys struct {
	Profile    uint16 // IANA SRTP protection profile, e.g. 0x0007 AEAD_AES_128_GCM
	LocalKey   []byte
	LocalSalt  []byte
	RemoteKey  []byte
	RemoteSalt []byte
}

// srtpExporterLabel is the RFC 5764 §4.2 key exporter label.
const srtpExporterLabel = "EXTRACTOR-dtls_srtp"

// Handshake runs the DTLS handshake with remote over conn, bounded by ctx, and
// returns the established connection and the SRTP keys. The peer's leaf
// certificate must match cfg.RemoteFingerprint, otherwise the error wraps
// ErrFingerprint. On error conn has been closed. On success the returned *Conn
// owns conn: closing it closes conn.
func Handshake(ctx context.Context, conn net.PacketConn, remote net.Addr, cfg HandshakeConfig) (*Conn, Keys, error) {
	if cfg.Certificate == nil {
		return nil, Keys{}, errors.New("dtls: no local certificate")
	}
	if cfg.Role != RoleServer && cfg.Role != RoleClient {
		return nil, Keys{}, fmt.Errorf("dtls: invalid role %v", cfg.Role)
	}
	want, err := parseFingerprint(cfg.RemoteFingerprint)
	if err != nil {
		return nil, Keys{}, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}

	// pion reports a failed verify callback wrapped in its own handshake and
	// alert errors; keep our error aside so the sentinel reliably survives.
	var (
		mu        sync.Mutex
		verifyErr error
	)
	verify := func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		var err error
		switch {
		case len(rawCerts) == 0:
			err = fmt.Errorf("%w: peer sent no certificate", ErrFingerprint)
		default:
			got := want.sum(rawCerts[0])
			if subtle.ConstantTimeCompare(got, want.digest) != 1 {
				err = fmt.Errorf("%w: peer certificate %s %s, expected %s",
					ErrFingerprint, want.name, formatFingerprint(got), formatFingerprint(want.digest))
			}
		}
		if err != nil {
			mu.Lock()
			verifyErr = err
			mu.Unlock()
		}

		return err
	}

	shared := []piondtls.Option{
		piondtls.WithCertificates(cfg.Certificate.TLSCertificate()),
		piondtls.WithSRTPProtectionProfiles(
			piondtls.SRTP_AEAD_AES_128_GCM,
			piondtls.SRTP_AES128_CM_HMAC_SHA1_80,
		),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithInsecureSkipVerify(true), // self-signed: the fingerprint check below authenticates
		piondtls.WithVerifyPeerCertificate(verify),
		piondtls.WithLoggerFactory(pionlog.NewLoggerFactory(log)),
	}

	var dc *piondtls.Conn
	if cfg.Role == RoleServer {
		opts := make([]piondtls.ServerOption, 0, len(shared)+1)
		for _, o := range shared {
			opts = append(opts, o)
		}
		opts = append(opts, piondtls.WithClientAuth(piondtls.RequireAnyClientCert))
		dc, err = piondtls.ServerWithOptions(conn, remote, opts...)
	} else {
		opts := make([]piondtls.ClientOption, 0, len(shared))
		for _, o := range shared {
			opts = append(opts, o)
		}
		dc, err = piondtls.ClientWithOptions(conn, remote, opts...)
	}
	if err != nil {
		_ = conn.Close()

		return nil, Keys{}, fmt.Errorf("dtls: configure %v: %w", cfg.Role, err)
	}

	if err := dc.HandshakeContext(ctx); err != nil {
		_ = dc.Close()
		mu.Lock()
		vErr := verifyErr
		mu.Unlock()
		if vErr != nil {
			return nil, Keys{}, fmt.Errorf("dtls: %v handshake: %w", cfg.Role, vErr)
		}
		if ctxErr := context.Cause(ctx); ctxErr != nil && !errors.Is(err, ctxErr) {
			return nil, Keys{}, fmt.Errorf("dtls: %v handshake: %w (%w)", cfg.Role, ctxErr, err)
		}

		return nil, Keys{}, fmt.Errorf("dtls: %v handshake: %w", cfg.Role, err)
	}

	keys, err := exportKeys(dc, cfg.Role)
	if err != nil {
		_ = dc.Close()

		return nil, Keys{}, err
	}
	log.Debug("dtls handshake complete", "role", cfg.Role.String(), "remote", remote.String(),
		"srtp_profile", pionsrtp.ProtectionProfile(keys.Profile).String())

	return newConn(dc, log), keys, nil
}

// exportKeys reads the negotiated profile and splits the RFC 5764 keying
// material client_key|server_key|client_salt|server_salt by our DTLS role.
func exportKeys(dc *piondtls.Conn, role Role) (Keys, error) {
	p, ok := dc.SelectedSRTPProtectionProfile()
	if !ok {
		return Keys{}, ErrNoSRTPProfile
	}
	profile := pionsrtp.ProtectionProfile(p)
	keyLen, err := profile.KeyLen()
	if err != nil {
		return Keys{}, fmt.Errorf("dtls: srtp profile %#04x: %w", uint16(p), err)
	}
	saltLen, err := profile.SaltLen()
	if err != nil {
		return Keys{}, fmt.Errorf("dtls: srtp profile %#04x: %w", uint16(p), err)
	}
	state, ok := dc.ConnectionState()
	if !ok {
		return Keys{}, errors.New("dtls: no connection state after handshake")
	}
	km, err := state.ExportKeyingMaterial(srtpExporterLabel, nil, 2*(keyLen+saltLen))
	if err != nil {
		return Keys{}, fmt.Errorf("dtls: export keying material: %w", err)
	}

	clientKey := km[:keyLen:keyLen]
	serverKey := km[keyLen : 2*keyLen : 2*keyLen]
	clientSalt := km[2*keyLen : 2*keyLen+saltLen : 2*keyLen+saltLen]
	serverSalt := km[2*keyLen+saltLen:]

	k := Keys{Profile: uint16(p)}
	if role == RoleClient {
		k.LocalKey, k.LocalSalt, k.RemoteKey, k.RemoteSalt = clientKey, clientSalt, serverKey, serverSalt
	} else {
		k.LocalKey, k.LocalSalt, k.RemoteKey, k.RemoteSalt = serverKey, serverSalt, clientKey, clientSalt
	}

	return k, nil
}
