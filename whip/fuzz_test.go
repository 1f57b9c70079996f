package whip

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzHandler sends arbitrary WHIP/WHEP requests (method, path, content type, If-Match, body) to a handler on a
// real engine: every one gets a well-formed HTTP answer, never a panic.
func FuzzHandler(f *testing.F) {
	h, _ := newServer(f, Config{})
	mux := http.NewServeMux()
	h.Mount(mux)
	f.Add(uint8(0), "/whip/s", "application/sdp", "", []byte("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"))
	f.Add(uint8(1), "/whep/s/abc", "application/trickle-ice-sdpfrag", `"x"`, []byte("a=ice-ufrag:x\r\na=ice-pwd:y\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"))
	f.Add(uint8(2), "/whip/s/abc", "", "*", []byte{})
	f.Add(uint8(3), "/rest-api/stream/publish/s", "application/sdp", "", []byte("garbage"))
	methods := []string{http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodGet, "BREW"}
	f.Fuzz(func(t *testing.T, m uint8, path, ctype, ifMatch string, body []byte) {
		if len(path) == 0 || path[0] != '/' || len(body) > 1<<17 {
			return
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], "http://example.test"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:5000"
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("%s %s: status %d", req.Method, path, rec.Code)
		}
	})
}
