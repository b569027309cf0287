package web

import (
	"net/http"
	"strings"
	"time"
)

// loginData is the sign-in page.
type loginData struct {
	Next  string
	Error string
}

// safeNext keeps a sign-in's way back on this site: a path of the
// dashboard, never another host.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	return next
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	v := &view{Title: "Sign in", SignedIn: s.API.Authorized(r), Path: r.URL.RequestURI(),
		Data: &loginData{Next: safeNext(r.URL.Query().Get("next"))}}
	s.render(w, http.StatusOK, "login", v)
}

// login trades the API token for a session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	c, ok := s.API.SignIn(token, time.Now(), r.TLS != nil)
	if !ok {
		s.Log.Warn("dashboard sign-in refused: wrong token", "client", r.RemoteAddr)
		v := &view{Title: "Sign in", Path: r.URL.RequestURI(),
			Data: &loginData{Next: next, Error: "That is not the API token. It is in the file api-token in the daemon's data directory (as root: cat /var/lib/provisiond/api-token)."}}
		s.render(w, http.StatusUnauthorized, "login", v)
		return
	}
	s.Log.Info("dashboard sign-in", "client", r.RemoteAddr)
	http.SetCookie(w, c)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, s.API.SignOut(r, r.TLS != nil))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}
