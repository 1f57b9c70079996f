// Package web serves rtcrelay's embedded web pages: an index, "Two Way Streaming", "Player", the project's own
// small JS client of the WCS signaling protocol, and /rtcrelay-config.json, which tells the pages which
// WebSocket ports to connect to.
package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Config is what the pages need to know about the server.
type Config struct {
	WSPort  int // ws:// signaling port for pages loaded over http; 0 = disabled
	WSSPort int // wss:// signaling port for pages loaded over https; 0 = disabled
}

// ClientConfig is the JSON document served at /rtcrelay-config.json.
type ClientConfig struct {
	WSPort  int `json:"wsPort"`
	WSSPort int `json:"wssPort"`
}

// Files returns the embedded static files (rooted at the site root).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil { // cannot happen: "static" is embedded
		panic(err)
	}
	return sub
}

// Handler serves the pages at "/" and the config at "/rtcrelay-config.json". Mount it at the root of the HTTP
// mux (REST lives under /rest-api/ and is mounted separately).
func Handler(cfg Config) http.Handler {
	cfgJSON, _ := json.Marshal(ClientConfig(cfg)) // cannot fail
	files := http.FileServerFS(Files())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rtcrelay-config.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(cfgJSON)
	})
	mux.Handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	}))
	return mux
}
