package oa

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Client reaches an enclosure's Onboard Administrators. Only the active OA
// answers SOAP calls; Login finds it and falls back to the other.
type Client struct {
	// Addresses are the OAs' addresses (host or host:port), in the order
	// to try them; Login puts the one /xmldata calls ACTIVE first.
	Addresses []string
	// User and Password are the OA login (one for every bay).
	User, Password string
	// Scheme is https (the OA's default) or http.
	Scheme string
	// LegacyTLS lets the client speak TLS 1.0 and 1.1 with the ciphers of
	// their day: OA firmware before 4.x offers nothing newer, and Go
	// refuses it otherwise. Off by default; set per enclosure.
	LegacyTLS bool
	// Timeout bounds each HTTP request (30 s when zero).
	Timeout time.Duration
	// BusyRetries is how often a call the OA answers "Enclosure Busy" is
	// retried (3 when zero), waiting BusyBackoff (2 s when zero), then
	// twice as long, between tries.
	BusyRetries int
	BusyBackoff time.Duration

	http *http.Client
	// view is the last /xmldata read: Login orders the OAs by it instead
	// of asking again.
	view *Enclosure
}

// Fault is an error the OA answered with: a SOAP fault, with the OA's own
// error number and text when it gave them.
type Fault struct {
	// Code and Subcode are the SOAP fault codes (Subcode
	// wsse:FailedAuthentication: the session key is not valid).
	Code, Subcode string
	// Reason is the SOAP fault's text.
	Reason string
	// ErrorCode and ErrorText are the OA's (Detail/faultInfo).
	ErrorCode int
	ErrorText string
}

func (f *Fault) Error() string {
	if f.ErrorText != "" {
		return fmt.Sprintf("the Onboard Administrator refused: %s (error %d)", f.ErrorText, f.ErrorCode)
	}
	return "the Onboard Administrator refused: " + cmpOr(f.Reason, f.Subcode, f.Code, "SOAP fault")
}

// Busy reports whether the OA said the enclosure is busy (a power request
// while it rebalances power, for example): worth retrying.
func (f *Fault) Busy() bool {
	return strings.Contains(strings.ToLower(f.ErrorText+" "+f.Reason), "busy")
}

// ErrStandby is what a standby OA answers with: the call must go to the
// active one.
var ErrStandby = errors.New("this Onboard Administrator is the standby: calls go to the active one")

func cmpOr(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// Session is a login on the active OA. Close logs out; always call it (an
// OA keeps few sessions).
type Session struct {
	c       *Client
	address string
	key     string
	// Retries counts the calls retried because the enclosure was busy.
	Retries int
}

// Address is the OA the session is on.
func (s *Session) Address() string { return s.address }

func (c *Client) client() *http.Client {
	if c.http != nil {
		return c.http
	}
	tlsConf := &tls.Config{
		// An OA's certificate is self-signed with its own name; the
		// enclosure record names the address.
		InsecureSkipVerify: true,
	}
	if c.LegacyTLS {
		tlsConf.MinVersion = tls.VersionTLS10
		tlsConf.CipherSuites = legacyCiphers()
	}
	c.http = &http.Client{Timeout: cmpDur(c.Timeout, 30*time.Second),
		Transport: &http.Transport{TLSClientConfig: tlsConf, Proxy: nil, MaxIdleConnsPerHost: 2}}
	return c.http
}

// legacyCiphers are every cipher suite Go implements, the insecure ones
// included: what old OA firmware needs.
func legacyCiphers() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		ids = append(ids, s.ID)
	}
	return ids
}

func cmpDur(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (c *Client) url(address, path string) string {
	return cmpOr(c.Scheme, "https") + "://" + address + path
}

// XMLData reads /xmldata?item=all (no login) from the first OA that
// answers.
func (c *Client) XMLData(ctx context.Context) (*Enclosure, string, error) {
	var errs []error
	for _, a := range c.Addresses {
		e, err := c.xmlData(ctx, a)
		if err == nil {
			c.view = e
			return e, a, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	if len(errs) == 0 {
		return nil, "", errors.New("no Onboard Administrator address: set the enclosure's oa address")
	}
	return nil, "", fmt.Errorf("no Onboard Administrator answered /xmldata: %w", errors.Join(errs...))
}

func (c *Client) xmlData(ctx context.Context, address string) (*Enclosure, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(address, "/xmldata?item=all"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/xmldata answered %s", resp.Status)
	}
	return ParseXMLData(resp.Body)
}

// Login logs in to the active OA: the one /xmldata names ACTIVE first,
// then the others; a standby or unreachable OA is passed over, wrong
// credentials end the attempt.
func (c *Client) Login(ctx context.Context) (*Session, error) {
	order := c.activeFirst(ctx)
	var errs []error
	for _, a := range order {
		key, err := c.login(ctx, a)
		if err == nil {
			return &Session{c: c, address: a, key: key}, nil
		}
		var f *Fault
		if errors.As(err, &f) && !errors.Is(err, ErrStandby) {
			return nil, fmt.Errorf("logging in to the Onboard Administrator %s as %s: %w (check the enclosure's user and password)", a, c.User, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	if len(errs) == 0 {
		return nil, errors.New("no Onboard Administrator address: set the enclosure's oa address")
	}
	return nil, fmt.Errorf("no active Onboard Administrator answered: %w", errors.Join(errs...))
}

// activeFirst orders the addresses with the active OA's first, as /xmldata
// reports the roles (the client's last read, else a new one), and adds the
// OAs /xmldata names that the record does not (the second OA of a pair);
// unchanged when /xmldata cannot be read.
func (c *Client) activeFirst(ctx context.Context) []string {
	order := append([]string(nil), c.Addresses...)
	e := c.view
	if e == nil {
		var err error
		if e, _, err = c.XMLData(ctx); err != nil {
			return order
		}
	}
	for _, m := range e.Managers {
		if m.Address == "" || slices.ContainsFunc(order, func(a string) bool { return host(a) == m.Address }) {
			continue
		}
		order = append(order, m.Address)
	}
	for _, m := range e.Managers {
		if m.Role != "ACTIVE" {
			continue
		}
		for i, a := range order {
			if host(a) == m.Address {
				order[0], order[i] = order[i], order[0]
			}
		}
	}
	return order
}

// host is the address without a port.
func host(a string) string {
	if i := strings.LastIndexByte(a, ':'); i > 0 && !strings.Contains(a[i:], "]") && strings.Count(a, ":") == 1 {
		return a[:i]
	}
	return a
}

func (c *Client) login(ctx context.Context, address string) (string, error) {
	var out struct {
		Key string `xml:"userLogInResponse>HpOaSessionKeyToken>oaSessionKey"`
	}
	body := "<hpoa:userLogIn><hpoa:username>" + escape(c.User) + "</hpoa:username><hpoa:password>" + escape(c.Password) + "</hpoa:password></hpoa:userLogIn>"
	if err := c.post(ctx, address, "", body, &out); err != nil {
		return "", err
	}
	if out.Key == "" {
		return "", errors.New("the Onboard Administrator's login answer has no session key")
	}
	return out.Key, nil
}

// Close logs out (errors are of no use to the caller: the session ends
// on the OA after its idle timeout anyway).
func (s *Session) Close(ctx context.Context) error {
	if s.key == "" {
		return nil
	}
	var out struct {
		OK *struct{} `xml:"userLogOutResponse>returnCodeOk"`
	}
	err := s.c.post(ctx, s.address, s.key, "<hpoa:userLogOut/>", &out)
	s.key = ""
	return err
}

// call runs one SOAP operation, retrying while the enclosure is busy.
func (s *Session) call(ctx context.Context, body string, out any) error {
	retries, backoff := s.c.BusyRetries, cmpDur(s.c.BusyBackoff, 2*time.Second)
	if retries == 0 {
		retries = 3
	}
	for try := 0; ; try++ {
		err := s.c.post(ctx, s.address, s.key, body, out)
		var f *Fault
		if err == nil || !errors.As(err, &f) || !f.Busy() || try >= retries {
			if err != nil && try > 0 {
				err = fmt.Errorf("%w (after %d retries: the enclosure stayed busy)", err, try)
			}
			return err
		}
		s.Retries++
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff *= 2
	}
}

const envelopeStart = `<?xml version="1.0"?>` + "\n" +
	`<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:hpoa="hpoa.xsd">` + "\n"

// maxAnswer bounds a SOAP answer read.
const maxAnswer = 4 << 20

// post sends one SOAP 1.2 request (with the session key in its
// WS-Security header when key is set) and decodes the answer's Body into
// out, or returns its Fault.
func (c *Client) post(ctx context.Context, address, key, body string, out any) error {
	var b strings.Builder
	b.WriteString(envelopeStart)
	if key != "" {
		b.WriteString(`<SOAP-ENV:Header><wsse:Security SOAP-ENV:mustUnderstand="true"><hpoa:HpOaSessionKeyToken><hpoa:oaSessionKey>`)
		b.WriteString(escape(key))
		b.WriteString("</hpoa:oaSessionKey></hpoa:HpOaSessionKeyToken></wsse:Security></SOAP-ENV:Header>\n")
	}
	b.WriteString("<SOAP-ENV:Body>\n" + body + "\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(address, "/hpoa"), strings.NewReader(b.String()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", `application/soap+xml; charset="utf-8"`)
	resp, err := c.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("reading the Onboard Administrator's answer: %w", err)
	}
	var env struct {
		Body struct {
			Inner []byte `xml:",innerxml"`
			Fault *struct {
				Code struct {
					Value   string `xml:"Value"`
					Subcode string `xml:"Subcode>Value"`
				} `xml:"Code"`
				Reason string `xml:"Reason>Text"`
				Info   struct {
					Code int    `xml:"errorCode"`
					Text string `xml:"errorText"`
				} `xml:"Detail>faultInfo"`
			} `xml:"Fault"`
		} `xml:"Body"`
	}
	if err := xml.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("the Onboard Administrator answered %s with no SOAP envelope: %w", resp.Status, err)
	}
	if f := env.Body.Fault; f != nil {
		fault := &Fault{Code: f.Code.Value, Subcode: f.Code.Subcode, Reason: strings.TrimSpace(f.Reason), ErrorCode: f.Info.Code, ErrorText: strings.TrimSpace(f.Info.Text)}
		if strings.Contains(strings.ToLower(fault.ErrorText+" "+fault.Reason), "standby") {
			return fmt.Errorf("%w: %w", ErrStandby, fault)
		}
		return fault
	}
	if out == nil {
		return nil
	}
	wrapped := append(append([]byte("<Body>"), env.Body.Inner...), "</Body>"...)
	if err := xml.NewDecoder(bytes.NewReader(wrapped)).Decode(out); err != nil {
		return fmt.Errorf("reading the Onboard Administrator's answer: %w", err)
	}
	return nil
}

func escape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
