package api

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// HostGuard serves only requests whose Host header names this daemon:
// one of names (compared without case and port), a loopback address or an
// address of one of this host's interfaces. Anything else is refused with
// 421 Misdirected Request: a web page that points a DNS name of its own at
// this host (DNS rebinding) gets nothing.
func HostGuard(names []string, next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, n := range names {
		allowed[normalizeHost(n)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := normalizeHost(r.Host)
		if !allowed[h] && !localAddress(h) {
			writeJSON(w, http.StatusMisdirectedRequest, Error{Error: "Host " + r.Host + " is not one of this daemon's names: use its address, or add the name to control.hosts"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// normalizeHost drops the port, the brackets of an IPv6 literal, a
// trailing dot and case.
func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	return strings.ToLower(h)
}

// localAddress reports whether h is an IP literal of this host: loopback
// or on one of its interfaces now.
func localAddress(h string) bool {
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(addrs, func(a net.Addr) bool {
		p, err := netip.ParsePrefix(a.String())
		return err == nil && p.Addr().Unmap() == ip
	})
}

// forwarded reports whether r came through a proxy that says so: such a
// request is never "local", whatever address the proxy connects from.
func forwarded(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip", "X-Forwarded-Host"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}
