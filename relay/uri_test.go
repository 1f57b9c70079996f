package relay

import (
	"errors"
	"testing"
)

func TestCheckURI(t *testing.T) {
	tests := []struct {
		in, want string
		tls      bool
		allow    []string
		err      error
	}{
		{in: "ws://Host:8080", want: "ws://host:8080/websocket"},
		{in: "ws://host:8080/", want: "ws://host:8080/websocket"},
		{in: "ws://host:8080/websocket", want: "ws://host:8080/websocket"},
		{in: "WS://HOST:80/x?y=1#frag", want: "ws://host/x?y=1"},
		{in: "wss://h:443", tls: true, want: "wss://h/websocket"},
		{in: "wss://h:8443", tls: true, want: "wss://h:8443/websocket"},
		{in: "ws://[::1]:8080", want: "ws://[::1]:8080/websocket"},
		{in: "ws://[::1]", want: "ws://[::1]/websocket"},
		{in: "ws://h:1", allow: []string{"H"}, want: "ws://h:1/websocket"},
		{in: "ws://h:1", allow: []string{"h:1"}, want: "ws://h:1/websocket"},
		{in: "ws://h:2", allow: []string{"h:1"}, err: ErrBadRequest},
		{in: "wss://h", err: ErrBadRequest},
		{in: "http://H:80/whip/s", want: "http://h/whip/s"},
		{in: "https://h:443/whep/s", want: "https://h/whep/s"},
		{in: "http://h:8081/", want: "http://h:8081/"},
		{in: "ftp://h", err: ErrBadRequest},
		{in: "h:8080", err: ErrBadRequest},
		{in: "ws:///path", err: ErrBadRequest},
		{in: "ws://u:p@h", err: ErrBadRequest},
		{in: "", err: ErrBadRequest},
		{in: "ws://%zz", err: ErrBadRequest},
	}
	for _, tt := range tests {
		got, err := checkURI(tt.in, tt.tls, tt.allow)
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) || got != tt.want {
			t.Errorf("checkURI(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}
