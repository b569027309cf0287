package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/provisiond/provisiond/internal/slurm"
)

// SlurmTokenSecret is the secret that holds the token scoped to Slurm's
// power saving.
const SlurmTokenSecret = "slurm-token"

// SlurmPower carries out slurmctld's power saving requests (see
// slurm.Controller).
type SlurmPower interface {
	Resume(req slurm.Request) (*slurm.Result, error)
	Suspend(ctx context.Context, req slurm.Request) (*slurm.Result, error)
	Failed(ctx context.Context, req slurm.Request) (*slurm.Result, error)
}

// SlurmToken is the answer to POST /api/v1/slurm/token: shown once.
type SlurmToken struct {
	Token string `json:"token"`
}

func (s *Server) registerSlurm(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/slurm/resume", s.slurmAuth(s.slurmAction("resume")))
	mux.HandleFunc("POST /api/v1/slurm/suspend", s.slurmAuth(s.slurmAction("suspend")))
	mux.HandleFunc("POST /api/v1/slurm/resume-failed", s.slurmAuth(s.slurmAction("resume-failed")))
	mux.HandleFunc("POST /api/v1/slurm/token", s.auth(s.newSlurmToken))
}

// slurmAuth lets a request through with the API token or with the token
// scoped to Slurm's power saving, which opens these three calls and
// nothing else.
func (s *Server) slurmAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.authorized(r) || s.slurmAuthorized(r) {
			next(w, r)
			return
		}
		writeJSON(w, http.StatusUnauthorized, Error{Error: "Slurm's power saving calls need the Slurm token (provisiond slurm token) or the API token"})
	}
}

func (s *Server) slurmAuthorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if s.SlurmToken == nil || !strings.HasPrefix(h, "Bearer ") {
		return false
	}
	want := s.SlurmToken()
	return want != "" && subtle.ConstantTimeCompare([]byte(strings.TrimPrefix(h, "Bearer ")), []byte(want)) == 1
}

func (s *Server) slurmAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Slurm == nil {
			writeJSON(w, http.StatusNotImplemented, Error{Error: "this daemon has no BMC support configured: Slurm's power saving needs it"})
			return
		}
		var req slurm.Request
		if err := decodeBody(r, "slurm "+action+" request", 64<<10, &req); err != nil {
			writeErr(w, err)
			return
		}
		var res *slurm.Result
		var err error
		switch action {
		case "resume":
			res, err = s.Slurm.Resume(req)
		case "suspend":
			res, err = s.Slurm.Suspend(r.Context(), req)
		default:
			res, err = s.Slurm.Failed(r.Context(), req)
		}
		switch {
		case errors.Is(err, slurm.ErrNoNodes):
			writeJSON(w, http.StatusUnprocessableEntity, Error{Error: refusedText(err, res.Refused)})
		case errors.Is(err, slurm.ErrBadHostlist):
			writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		case err != nil:
			writeErr(w, err)
		default:
			writeJSON(w, http.StatusOK, res)
		}
	}
}

// refusedText says why each node was refused.
func refusedText(err error, refused []slurm.Refusal) string {
	parts := make([]string, 0, len(refused))
	for _, r := range refused {
		parts = append(parts, r.Node+" ("+r.Reason+")")
	}
	return err.Error() + ": " + strings.Join(parts, "; ")
}

// newSlurmToken makes a new token scoped to Slurm's power saving, stores
// it as a secret (replacing the old one) and answers it, once.
func (s *Server) newSlurmToken(w http.ResponseWriter, r *http.Request) {
	if s.Secrets == nil {
		writeJSON(w, http.StatusNotImplemented, Error{Error: "this daemon stores no secrets"})
		return
	}
	b := make([]byte, 32)
	rand.Read(b)
	tok := "slurm-" + hex.EncodeToString(b)
	if err := s.Secrets.SetSecret(SlurmTokenSecret, tok); err != nil {
		writeErr(w, err)
		return
	}
	s.Log.Info("new Slurm token made", "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, SlurmToken{Token: tok})
}

// SlurmAction sends one of slurmctld's power saving requests (action
// resume, suspend or resume-failed).
func (c *Client) SlurmAction(ctx context.Context, action string, req slurm.Request) (*slurm.Result, error) {
	var out slurm.Result
	if err := c.do(ctx, http.MethodPost, "/api/v1/slurm/"+action, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// NewSlurmToken makes a new Slurm token (the old one stops working).
func (c *Client) NewSlurmToken(ctx context.Context) (string, error) {
	var out SlurmToken
	if err := c.do(ctx, http.MethodPost, "/api/v1/slurm/token", struct{}{}, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}
