package relay

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Sentinel errors of the Manager; rest/ maps them to HTTP status codes.
var (
	ErrBadRequest = errors.New("bad request") // 400: missing fields, refused uri
	ErrNotFound   = errors.New("not found")   // 404: push of an unpublished stream; no agent matches
	ErrConflict   = errors.New("conflict")    // 409: same agent exists; pull into a published name
	ErrLoop       = errors.New("relay loop")  // 409: the stream already went through this server
	ErrClosed     = errors.New("relay manager closed")
	// ErrTerminated is the cause an agent's context is cancelled with by Terminate.
	ErrTerminated = errors.New("terminated by rest /pull/terminate")
)

// checkURI validates a relay uri against the scheme rules and the allow-list and returns its normalized
// form: lower-case scheme and host, the default port (80 for ws/http, 443 for wss/https) removed, for ws/wss an
// empty path or "/" replaced by "/websocket" (WCS treats wss://host:8443 and wss://host:8443/websocket as the
// same server), no fragment. http(s) URIs are WHIP/WHEP endpoints; https uses the agents' TLS trust roots. Agents report the uri as sent; the normalized form is only used to compare.
func checkURI(raw string, agentTLS bool, allow []string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("%w: uri is required", ErrBadRequest)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: uri: %w", ErrBadRequest, err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "ws", "http", "https": // http(s): a WHIP (push) or WHEP (pull) endpoint
	case "wss":
		if !agentTLS {
			return "", fmt.Errorf("%w: wss:// uri needs relay TLS (wcs_agent_ssl) enabled", ErrBadRequest)
		}
	default:
		return "", fmt.Errorf("%w: uri must be ws://, wss://, http:// or https://, got %q", ErrBadRequest, raw)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", fmt.Errorf("%w: uri %q has no host", ErrBadRequest, raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("%w: uri must not carry credentials", ErrBadRequest)
	}
	port := u.Port()
	if ((scheme == "ws" || scheme == "http") && port == "80") || ((scheme == "wss" || scheme == "https") && port == "443") {
		port = ""
	}
	if len(allow) > 0 && !allowed(host, port, allow) {
		return "", fmt.Errorf("%w: host %q is not in the relay allow-list", ErrBadRequest, host)
	}
	hostport := host
	if strings.Contains(host, ":") {
		hostport = "[" + host + "]"
	}
	if port != "" {
		hostport = net.JoinHostPort(host, port)
	}
	path := u.EscapedPath()
	if (path == "" || path == "/") && (scheme == "ws" || scheme == "wss") {
		path = "/websocket"
	}
	n := scheme + "://" + hostport + path
	if u.RawQuery != "" {
		n += "?" + u.RawQuery
	}
	return n, nil
}

// allowed matches host (and port) against allow-list entries "host" (any port) or "host:port".
func allowed(host, port string, allow []string) bool {
	for _, a := range allow {
		a = strings.ToLower(strings.TrimSpace(a))
		if h, p, err := net.SplitHostPort(a); err == nil {
			if strings.Trim(h, "[]") == host && p == port {
				return true
			}
			continue
		}
		if strings.Trim(a, "[]") == host {
			return true
		}
	}
	return false
}
