package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"time"
)

// SessionCookie names the cookie a browser holds after signing in to the
// dashboard with the API token.
const SessionCookie = "provisiond_session"

// SessionTTL is how long a dashboard sign-in lasts.
const SessionTTL = 12 * time.Hour

// maxSessions bounds the sessions held at once; signing in past it ends
// the oldest.
const maxSessions = 256

// session is one signed-in browser, known only to this daemon's memory:
// signing out ends it, and so does a restart (nothing of it is on disk or
// in a backup).
type session struct {
	token   string // the API token it was opened with
	expires time.Time
}

// SignIn checks token against the API token and, when it matches, opens a
// session and returns the cookie that stands for it until SessionTTL after
// now. The cookie holds a random session ID, never the token.
func (s *Server) SignIn(token string, now time.Time, secure bool) (*http.Cookie, bool) {
	cur := s.Token
	if cur == "" || subtle.ConstantTimeCompare([]byte(token), []byte(cur)) != 1 {
		return nil, false
	}
	raw := make([]byte, 32)
	rand.Read(raw) // never fails (crypto/rand)
	id := base64.RawURLEncoding.EncodeToString(raw)
	exp := now.Add(SessionTTL)
	s.sessMu.Lock()
	if s.sessions == nil {
		s.sessions = map[string]session{}
	}
	if len(s.sessions) >= maxSessions {
		var oldest string
		for k, v := range s.sessions {
			if now.After(v.expires) {
				delete(s.sessions, k)
				continue
			}
			if oldest == "" || v.expires.Before(s.sessions[oldest].expires) {
				oldest = k
			}
		}
		if len(s.sessions) >= maxSessions {
			delete(s.sessions, oldest)
		}
	}
	s.sessions[id] = session{token: cur, expires: exp}
	s.sessMu.Unlock()
	return &http.Cookie{
		Name:     SessionCookie,
		Value:    id,
		Path:     "/",
		Expires:  exp,
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteStrictMode,
	}, true
}

// SignOut ends the session r carries, if any, and returns the cookie that
// clears it in the browser.
func (s *Server) SignOut(r *http.Request, secure bool) *http.Cookie {
	if c, err := r.Cookie(SessionCookie); err == nil {
		s.sessMu.Lock()
		delete(s.sessions, c.Value)
		s.sessMu.Unlock()
	}
	return &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

// validSession says whether r carries an open, unexpired session opened
// with the current token (a new token ends every session).
func (s *Server) validSession(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	if err != nil || s.Token == "" {
		return false
	}
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	v, ok := s.sessions[c.Value]
	if !ok {
		return false
	}
	if time.Now().After(v.expires) || v.token != s.Token {
		delete(s.sessions, c.Value)
		return false
	}
	return true
}

// Authorized says whether r may change things: it carries the API token
// (Authorization: Bearer) or an open dashboard session. Browsers'
// cross-origin requests never get this far: the daemon's handler refuses
// them (http.CrossOriginProtection), so a session cookie cannot be used by
// another site.
func (s *Server) Authorized(r *http.Request) bool {
	return s.authorized(r)
}

// MayRead says whether r may read under the read policy.
func (s *Server) MayRead(r *http.Request) bool {
	return s.mayRead(r)
}
