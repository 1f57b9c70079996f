package signaling

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/rtcrelay/rtcrelay/relayauth"
)

// ClientConfig configures Dial.
type ClientConfig struct {
	TLS            *tls.Config // for wss:// (trust roots for self-signed peers)
	Logger         *slog.Logger
	AppKey         string          // default "defaultApp"
	Custom         json.RawMessage // connection custom object
	MaxMessageSize int64           // default 1 MiB
	StopTimeout    time.Duration   // Stop's wait for the terminal status when ctx has no deadline; default 5 s
	WriteTimeout   time.Duration   // default 10 s
	// NetDial, when set, opens the TCP connection instead of net.Dialer (tests use in-memory pipes).
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OnStatus, if set, sees every stream status (called on the reader
	// goroutine: must not block).
	OnStatus func(StreamStatus)
}

// StreamStatus is a notifyStreamStatusEvent as the client sees it.
type StreamStatus struct {
	MediaSessionID string
	Name           string
	Status         string
	Info           string
	Local          bool            // made up by the client (socket closed), not sent by the server
	Raw            json.RawMessage // the server's object
}

// StreamError is a FAILED (or other terminal) status returned by Publish/Play.
// errors.Is matches the sentinels whose info string it carries (media.ErrNotFound for "Stream not found", ...).
type StreamError struct {
	Status, Info string
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("signaling: remote %s: %s", e.Status, e.Info)
}

// Is matches the sentinels of infoTable with the same info string.
func (e *StreamError) Is(target error) bool { return infoIs(e.Info, target) }

// ConnectionError is the end reason of a client whose server refused the session (ConnectionStatusEvent
// FAILED, e.g. a backend's denial or "Relay authentication failed: ..."). errors.Is matches infoTable's sentinels
// as StreamError does, and relayauth.ErrAuth for a relay authentication refusal.
type ConnectionError struct {
	Info string
}

func (e *ConnectionError) Error() string {
	return "signaling: server refused the connection: " + e.Info
}

// Is matches the sentinels of infoTable with the same info string, and relayauth.ErrAuth.
func (e *ConnectionError) Is(target error) bool { return infoIs(e.Info, target) }

// infoIs reports whether a remote's info string is the one of sentinel target.
func infoIs(info string, target error) bool {
	if errors.Is(target, relayauth.ErrAuth) {
		return relayauth.IsInfo(info)
	}
	i := infoOf(target)
	return i != "" && i == info
}

// ErrClientClosed is returned for operations on a closed client.
var ErrClientClosed = errors.New("signaling: client closed")

type clientStream struct {
	name     string
	publish  bool
	answer   chan string       // setRemoteSDP
	status   chan StreamStatus // every status; closed after the terminal one
	end      chan struct{}     // closed at the terminal status
	final    StreamStatus
	finished bool
}

// Client is a WCS signaling client, as a relay agent uses it.
type Client struct {
	cfg ClientConfig
	nc  net.Conn
	log *slog.Logger
	wmu sync.Mutex

	mu       sync.Mutex
	streams  map[string]*clientStream
	avail    map[string]chan availability
	userData json.RawMessage
	refused  string // the info of a ConnectionStatusEvent FAILED: the session's end reason

	established chan struct{}
	done        chan struct{}
	err         error // set before done is closed
	closeOnce   sync.Once
	dropped     atomic.Uint64
}

// Dial connects to a WCS-compatible server (ws:// or wss://), sends
// connection and waits for getUserData.
func Dial(ctx context.Context, uri string, cfg ClientConfig) (*Client, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AppKey == "" {
		cfg.AppKey = "defaultApp"
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 1 << 20
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	d := ws.Dialer{TLSConfig: cfg.TLS, NetDial: cfg.NetDial}
	nc, br, _, err := d.Dial(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("signaling: dial %s: %w", uri, err)
	}
	var src io.Reader = nc
	if br != nil {
		src = io.MultiReader(br, nc)
	}
	c := &Client{
		cfg:         cfg,
		nc:          nc,
		log:         cfg.Logger.With("uri", uri),
		streams:     map[string]*clientStream{},
		avail:       map[string]chan availability{},
		established: make(chan struct{}),
		done:        make(chan struct{}),
	}
	go c.readLoop(bufio.NewReader(src))
	conn := map[string]any{"appKey": cfg.AppKey, "mediaProviders": []string{"WebRTC"}, "clientVersion": "2.0"}
	if len(cfg.Custom) > 0 {
		conn["custom"] = cfg.Custom
	}
	if err := c.send(MsgConnection, conn); err != nil {
		c.Close()
		return nil, err
	}
	select {
	case <-c.established:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("signaling: handshake with %s: %w", uri, c.err)
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("signaling: handshake with %s: %w", uri, context.Cause(ctx))
	}
}

// UserData returns the server's getUserData object.
func (c *Client) UserData() json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.userData
}

// Done is closed when the socket has closed; Err then tells why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is the reason the client ended (nil before Done).
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Dropped counts statuses dropped because a Status channel was full.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// Close closes the socket (close frame 1000) and waits for the reader.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_ = wsutil.WriteClientMessage(c.nc, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		c.wmu.Unlock()
		_ = c.nc.Close()
	})
	<-c.done
	return nil
}

func (c *Client) send(name string, payload any) error {
	b, err := EncodeMessage(name, payload)
	if err != nil {
		return err
	}
	return c.write(ws.OpText, b)
}

func (c *Client) write(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	if err := wsutil.WriteClientMessage(c.nc, op, p); err != nil {
		return fmt.Errorf("signaling: write: %w", err)
	}
	return nil
}

// NewMediaSessionID returns a random UUID (v4) string.
func NewMediaSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Publish sends publishStream with the offer and returns the answer SDP
// from setRemoteSDP, or a *StreamError if the server refused it. An empty
// mediaSessionID gets a fresh UUID; Status(id) then reports PUBLISHING etc.
func (c *Client) Publish(ctx context.Context, name, mediaSessionID, offerSDP string, custom json.RawMessage) (string, error) {
	req := map[string]any{
		"name": name, "published": true, "hasAudio": true, "hasVideo": true, "status": StatusPending,
		"record": false, "mediaProvider": "WebRTC", "sdp": offerSDP, "bitrate": 0, "minBitrate": 0, "maxBitrate": 0,
	}
	return c.start(ctx, MsgPublishStream, true, name, mediaSessionID, custom, req)
}

// Play sends playStream with the offer and returns the answer SDP.
func (c *Client) Play(ctx context.Context, name, mediaSessionID, offerSDP string, custom json.RawMessage) (string, error) {
	req := map[string]any{
		"name": name, "published": false, "hasAudio": true, "hasVideo": true, "status": StatusPending,
		"record": false, "width": 0, "height": 0, "mediaProvider": "WebRTC", "sdp": offerSDP,
		"bitrate": 0, "minBitrate": 0, "maxBitrate": 0, "quality": 0,
	}
	return c.start(ctx, MsgPlayStream, false, name, mediaSessionID, custom, req)
}

func (c *Client) start(ctx context.Context, msg string, publish bool, name, id string, custom json.RawMessage, req map[string]any) (string, error) {
	if id == "" {
		id = NewMediaSessionID()
	}
	req["mediaSessionId"] = id
	if len(custom) > 0 {
		req["custom"] = custom
	}
	cs := &clientStream{name: name, publish: publish, answer: make(chan string, 1), status: make(chan StreamStatus, 16), end: make(chan struct{})}
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return "", ErrClientClosed
	default:
	}
	if c.streams[id] != nil {
		c.mu.Unlock()
		return "", &StreamError{Status: StatusFailed, Info: InfoMediaSessionIDInUse}
	}
	c.streams[id] = cs
	c.mu.Unlock()
	if err := c.send(msg, req); err != nil {
		c.forget(id)
		return "", err
	}
	select {
	case sdp := <-cs.answer:
		return sdp, nil
	case <-cs.end:
		select {
		case sdp := <-cs.answer: // answered, then ended: Status tells the rest
			return sdp, nil
		default:
		}
		return "", &StreamError{Status: cs.final.Status, Info: cs.final.Info}
	case <-ctx.Done():
		// Give up locally; tell the server so it does not keep the stream.
		c.forget(id)
		_ = c.send(stopMessage(publish), map[string]any{"mediaSessionId": id, "name": name, "published": publish})
		return "", fmt.Errorf("signaling: %s %q: %w", msg, name, context.Cause(ctx))
	}
}

func stopMessage(publish bool) string {
	if publish {
		return MsgUnPublishStream
	}
	return MsgStopStream
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs := c.streams[id]; cs != nil {
		delete(c.streams, id)
		c.finishLocked(cs, StreamStatus{MediaSessionID: id, Name: cs.name, Status: StatusFailed, Info: "Local cancel", Local: true})
	}
}

// Status returns the channel of the stream's statuses after the answer
// (PUBLISHING/PLAYING, then a terminal one); it is closed after the terminal
// status. Nil for an unknown id.
func (c *Client) Status(mediaSessionID string) <-chan StreamStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs := c.streams[mediaSessionID]; cs != nil {
		return cs.status
	}
	return nil
}

// Stop sends unPublishStream or stopStream and waits (bounded) for the
// terminal status. Stopping an unknown id is a no-op.
func (c *Client) Stop(ctx context.Context, mediaSessionID string) error {
	c.mu.Lock()
	cs := c.streams[mediaSessionID]
	c.mu.Unlock()
	if cs == nil {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.StopTimeout)
		defer cancel()
	}
	req := map[string]any{"mediaSessionId": mediaSessionID, "name": cs.name, "published": cs.publish,
		"hasAudio": true, "hasVideo": true, "status": StatusPublishing, "record": false}
	if !cs.publish {
		req["status"] = StatusPlaying
	}
	if err := c.send(stopMessage(cs.publish), req); err != nil {
		return err
	}
	select {
	case <-cs.end:
		return nil
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("signaling: stop %s: %w", mediaSessionID, context.Cause(ctx))
	}
}

// Available asks whether a stream name is published on the server.
func (c *Client) Available(ctx context.Context, name string) (bool, string, error) {
	id := NewMediaSessionID()
	ch := make(chan availability, 1)
	c.mu.Lock()
	c.avail[id] = ch
	c.mu.Unlock()
	defer func() { c.mu.Lock(); delete(c.avail, id); c.mu.Unlock() }()
	if err := c.send(MsgAvailableStream, map[string]any{"mediaSessionId": id, "name": name}); err != nil {
		return false, "", err
	}
	select {
	case a := <-ch:
		return a.Status == "true", a.Info, nil
	case <-c.done:
		return false, "", ErrClientClosed
	case <-ctx.Done():
		return false, "", context.Cause(ctx)
	}
}
