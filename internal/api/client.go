package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/certs"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// Client talks to a running daemon's API on its control plane. It is safe
// for concurrent use; its connections are reused.
type Client struct {
	// Server is the daemon's control plane URL (https://127.0.0.1:8443).
	Server string
	// Token is the API token (needed for changes).
	Token string
	// Fingerprint pins the control plane's certificate (sha256:…, as
	// provisiond status prints it). Empty trusts the certificate the
	// server presents and reports it to FirstUse (trust on first use).
	Fingerprint string
	// FirstUse, when set, is told the fingerprint of a certificate
	// trusted without a pin, so the caller can pin it.
	FirstUse func(fingerprint string)
	// Insecure trusts any certificate (never the default).
	Insecure bool
	// HTTP is the HTTP client; nil means one with sane timeouts and the
	// pin above, made once.
	HTTP *http.Client
	// Warn, when set, hears the server's warnings (a check it could not
	// make), one call per Warning header.
	Warn func(string)

	once sync.Once
	made *http.Client // requests with a response timeout
	long *http.Client // event streams and downloads
}

func (c *Client) clients() (*http.Client, *http.Client) {
	if c.HTTP != nil {
		return c.HTTP, c.HTTP
	}
	c.once.Do(func() {
		tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: certs.ClientConfig(c.Fingerprint, c.FirstUse),
			TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second, MaxIdleConnsPerHost: 16}
		if c.Insecure {
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		}
		timed := tr.Clone()
		timed.ResponseHeaderTimeout = 5 * time.Minute
		c.made = &http.Client{Transport: timed}
		c.long = &http.Client{Transport: tr}
	})
	return c.made, c.long
}

// reachErr says why the daemon could not be reached and what to do.
func (c *Client) reachErr(err error) error {
	var mm *certs.MismatchError
	if errors.As(err, &mm) {
		return fmt.Errorf("refusing provisiond at %s: %w. If its certificate was replaced on purpose, compare the new fingerprint with the daemon's log or 'openssl x509 -noout -fingerprint -sha256 -in /var/lib/provisiond/tls.crt' on its host, then trust it: provisiond trust --server %s", c.Server, mm, c.Server)
	}
	return fmt.Errorf("cannot reach provisiond at %s: %w (is provisiond serve running? set --server or PROVISIOND_SERVER; the API is on the control plane, https://HOST:8443)", c.Server, err)
}

func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Server, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("bad server URL %q: %w", c.Server, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

// send adds the token, sends req and decodes the answer into out.
func (c *Client) send(req *http.Request, out any) error {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	made, _ := c.clients()
	resp, err := made.Do(req)
	if err != nil {
		return c.reachErr(err)
	}
	defer resp.Body.Close()
	if c.Warn != nil {
		for _, v := range resp.Header.Values("Warning") {
			// 299 provisiond "text"
			if i := strings.IndexByte(v, '"'); i >= 0 {
				v = strings.TrimSuffix(v[i+1:], `"`)
			}
			c.Warn(v)
		}
	}
	if resp.StatusCode >= 300 {
		var e Error
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return &StatusError{Code: resp.StatusCode, Msg: e.Error}
		}
		return &StatusError{Code: resp.StatusCode, Msg: strings.TrimSpace(string(raw))}
	}
	if out == nil {
		return nil
	}
	if b, ok := out.(*[]byte); ok {
		*b, err = io.ReadAll(resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// stream sends a request whose answer is read as it arrives (no response
// timeout): event streams and download progress. body, when set, is sent as
// JSON. A non-200 answer is returned as a *StatusError.
func (c *Client) stream(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Server, "/")+path, rd)
	if err != nil {
		return nil, fmt.Errorf("bad server URL %q: %w", c.Server, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	_, streaming := c.clients()
	resp, err := streaming.Do(req)
	if err != nil {
		return nil, c.reachErr(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e Error
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return nil, &StatusError{Code: resp.StatusCode, Msg: e.Error}
	}
	return resp, nil
}

// StatusError is an API error response.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return e.Msg }

// Machines lists the inventory.
func (c *Client) Machines(ctx context.Context) ([]inventory.Machine, error) {
	var out []inventory.Machine
	return out, c.do(ctx, http.MethodGet, "/api/v1/machines", nil, &out)
}

// Machine returns one machine.
func (c *Client) Machine(ctx context.Context, name string) (*inventory.Machine, error) {
	var out inventory.Machine
	if err := c.do(ctx, http.MethodGet, "/api/v1/machines/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateMachine adds a machine.
func (c *Client) CreateMachine(ctx context.Context, m inventory.Machine) (*inventory.Machine, error) {
	var out inventory.Machine
	if err := c.do(ctx, http.MethodPost, "/api/v1/machines", m, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateMachine replaces a machine record.
func (c *Client) UpdateMachine(ctx context.Context, m inventory.Machine) (*inventory.Machine, error) {
	var out inventory.Machine
	if err := c.do(ctx, http.MethodPut, "/api/v1/machines/"+url.PathEscape(m.Name), m, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Assign gives a machine a profile, persistent or once.
func (c *Client) Assign(ctx context.Context, machine string, req AssignRequest) (*inventory.Machine, error) {
	var out inventory.Machine
	if err := c.do(ctx, http.MethodPost, "/api/v1/machines/"+url.PathEscape(machine)+"/assign", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteMachine removes a machine.
func (c *Client) DeleteMachine(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/machines/"+url.PathEscape(name), nil, nil)
}

// Script returns the script the machine would get now, with secrets
// redacted unless reveal is set.
func (c *Client) Script(ctx context.Context, name, mac string, reveal bool) ([]byte, error) {
	var out []byte
	q := url.Values{}
	if mac != "" {
		q.Set("mac", mac)
	}
	if reveal {
		q.Set("reveal", "1")
	}
	p := "/api/v1/machines/" + url.PathEscape(name) + "/script?" + q.Encode()
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// Profile returns one profile with its template.
func (c *Client) Profile(ctx context.Context, name string) (*ProfileInfo, error) {
	var out ProfileInfo
	if err := c.do(ctx, http.MethodGet, "/api/v1/profiles/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetSecret stores a secret.
func (c *Client) SetSecret(ctx context.Context, name, value string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, strings.TrimRight(c.Server, "/")+"/api/v1/secrets/"+url.PathEscape(name), strings.NewReader(value))
	if err != nil {
		return err
	}
	return c.send(req, nil)
}

// Secrets lists the stored secrets (names only).
func (c *Client) Secrets(ctx context.Context) ([]inventory.SecretInfo, error) {
	var out []inventory.SecretInfo
	return out, c.do(ctx, http.MethodGet, "/api/v1/secrets", nil, &out)
}

// DeleteSecret removes a secret.
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/secrets/"+url.PathEscape(name), nil, nil)
}

// Profiles lists the profiles.
func (c *Client) Profiles(ctx context.Context) ([]ProfileInfo, error) {
	var out []ProfileInfo
	return out, c.do(ctx, http.MethodGet, "/api/v1/profiles", nil, &out)
}

// Status returns the daemon's counters.
// Health asks the control plane whether it is up (no token needed).
func (c *Client) Health(ctx context.Context) (string, error) {
	var out []byte
	err := c.do(ctx, http.MethodGet, "/healthz", nil, &out)
	return strings.TrimSpace(string(out)), err
}

// Status returns the daemon's counters and its certificate's fingerprint.
func (c *Client) Status(ctx context.Context) (map[string]any, error) {
	var out map[string]any
	return out, c.do(ctx, http.MethodGet, "/api/v1/status", nil, &out)
}

// Events returns a machine's stored timeline.
func (c *Client) Events(ctx context.Context, name string, limit int) ([]events.Event, error) {
	var out []events.Event
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/machines/%s/events?limit=%d", url.PathEscape(name), limit), nil, &out)
}

// Follow streams events (of one machine, or all when name is empty) to fn
// until ctx ends or fn returns an error. The stored timeline comes first.
func (c *Client) Follow(ctx context.Context, name string, limit int, fn func(events.Event) error) error {
	p := "/api/v1/events?follow=1"
	if name != "" {
		p = fmt.Sprintf("/api/v1/machines/%s/events?follow=1&limit=%d", url.PathEscape(name), limit)
	}
	return c.follow(ctx, p, fn)
}

// FollowAfter calls fn for each of the machine's events with a sequence
// number above after, stored and then live, until ctx ends or fn fails.
func (c *Client) FollowAfter(ctx context.Context, name string, after uint64, fn func(events.Event) error) error {
	return c.follow(ctx, fmt.Sprintf("/api/v1/machines/%s/events?follow=1&after=%d", url.PathEscape(name), after), fn)
}

func (c *Client) follow(ctx context.Context, p string, fn func(events.Event) error) error {
	resp, err := c.stream(ctx, http.MethodGet, p, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var ev events.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			continue
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream from %s broke: %w", c.Server, err)
	}
	return errors.New("provisiond closed the event stream (daemon stopped?)")
}

// Backup streams a backup archive of the running daemon to w and returns
// the bytes written.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.stream(ctx, http.MethodGet, "/api/v1/backup", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup: the stream broke after %d bytes: %w (the daemon's log says why)", n, err)
	}
	return n, nil
}
