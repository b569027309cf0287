package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SessionCookie names the cookie a browser holds after signing in to the
// dashboard with the API token.
const SessionCookie = "provisiond_session"

// SessionTTL is how long a dashboard sign-in lasts.
const SessionTTL = 12 * time.Hour

// sessionMAC signs a session's expiry with the API token: a new token ends
// every session signed with the old one.
func (s *Server) sessionMAC(expires int64) []byte {
	h := hmac.New(sha256.New, []byte(s.Token))
	h.Write([]byte("provisiond dashboard session " + strconv.FormatInt(expires, 10)))
	return h.Sum(nil)
}

// SignIn checks token against the API token and, when it matches, returns
// the session cookie that stands for it until SessionTTL after now. The
// cookie holds an expiry and its signature, never the token.
func (s *Server) SignIn(token string, now time.Time, secure bool) (*http.Cookie, bool) {
	if s.Token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(s.Token)) != 1 {
		return nil, false
	}
	exp := now.Add(SessionTTL).Unix()
	return &http.Cookie{
		Name:     SessionCookie,
		Value:    strconv.FormatInt(exp, 10) + "." + base64.RawURLEncoding.EncodeToString(s.sessionMAC(exp)),
		Path:     "/",
		Expires:  time.Unix(exp, 0),
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteStrictMode,
	}, true
}

// SignOut returns the cookie that ends a browser's session.
func SignOut(secure bool) *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

// validSession says whether r carries an unexpired session cookie signed
// with the current token.
func (s *Server) validSession(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	if err != nil || s.Token == "" {
		return false
	}
	expStr, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || time.Now().Unix() >= exp {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	return err == nil && hmac.Equal(got, s.sessionMAC(exp))
}

// Authorized says whether r may change things: it carries the API token
// (Authorization: Bearer) or a dashboard session signed with it. Browsers'
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
