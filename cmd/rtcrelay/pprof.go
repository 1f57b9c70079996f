package main

import (
	"net/http"
	"net/http/pprof"
)

// pprofHandler serves the runtime profiles (/debug/pprof/...) on a mux of its own, for the loopback-only
// --pprof-port listener: `go tool pprof http://127.0.0.1:PORT/debug/pprof/heap`.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
