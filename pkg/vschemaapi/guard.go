package vschemaapi

import (
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Guard is what a handler refuses of the requests a web browser can be
// made to send to a server that trusts whoever reaches it (no bearer
// token: unauthenticated on loopback, or mutual TLS alone, whose
// certificate a browser presents by itself). A bearer token is not
// ambient: a page cannot make a browser send it, so a token-authenticated
// server needs none of these checks and makes none.
type Guard int

const (
	// GuardNone checks nothing: for bearer tokens.
	GuardNone Guard = iota
	// GuardBrowser refuses cross-origin requests and writes that are not
	// application/json: for mutual TLS without tokens.
	GuardBrowser
	// GuardLoopback is GuardBrowser and also requires the request's Host
	// to be localhost or a loopback IP literal (any port): for a server
	// without authentication, on loopback. A page on a DNS-rebound name
	// reaches a loopback server with its own name in Host; this refuses it
	// before the page can read the answer.
	GuardLoopback
)

// GuardFor is the guard of a server authenticating with bearer tokens
// (none), with client certificates alone (GuardBrowser), or not at all
// (GuardLoopback; such a server must listen on loopback only).
func GuardFor(tokens, clientCerts bool) Guard {
	switch {
	case tokens:
		return GuardNone
	case clientCerts:
		return GuardBrowser
	}
	return GuardLoopback
}

// check returns the error response of a request the guard refuses, or nil.
//
//   - Host (GuardLoopback): 421 unless localhost, 127.0.0.0/8 or [::1].
//   - Origin and Sec-Fetch-Site: 403 for a request a browser marks as
//     coming from another origin, on any method (what
//     http.CrossOriginProtection checks, there for unsafe methods only).
//   - Content-Type: 415 for a method other than GET, HEAD and OPTIONS
//     unless application/json; a page can POST text/plain, form data or no
//     body at all without a CORS preflight, never application/json.
func (g Guard) check(r *http.Request) *httpError {
	if g == GuardNone {
		return nil
	}
	if g == GuardLoopback && !isLoopbackHost(r.Host) {
		return &httpError{status: http.StatusMisdirectedRequest,
			msg: "Host " + quoteOrEmpty(r.Host) + " is not a loopback name: this vschemad serves without authentication, to localhost, 127.0.0.1 or [::1] only"}
	}
	if err := crossOrigin(r); err != "" {
		return &httpError{status: http.StatusForbidden, msg: err + ": this vschemad serves without bearer tokens and refuses requests from web pages"}
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return &httpError{status: http.StatusUnsupportedMediaType,
			msg: "Content-Type " + quoteOrEmpty(ct) + ": send Content-Type: application/json (required of every " + r.Method + " when serving without bearer tokens)"}
	}
	return nil
}

// crossOrigin says why a browser request comes from another origin than
// the server's, or "": Sec-Fetch-Site other than same-origin or none, else
// an Origin whose host:port is not the request's Host ("null" included).
func crossOrigin(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return "Sec-Fetch-Site " + site
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return "Origin " + origin + " is not this server (Host " + quoteOrEmpty(r.Host) + ")"
	}
	return ""
}

// isLoopbackHost reports whether host (a Host header: name or IP literal,
// with or without a port) is localhost or a loopback IP address.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.IsLoopback()
}

func quoteOrEmpty(s string) string {
	if s == "" {
		return "(none)"
	}
	return `"` + s + `"`
}
