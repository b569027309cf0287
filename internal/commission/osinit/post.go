package osinit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/provisiond/provisiond/internal/commission"
)

// Poster sends the report.
type Poster interface {
	Post(ctx context.Context, url string, rep *commission.Report) error
}

// HTTPPoster posts the report as JSON, retrying while the network or the
// daemon is not there yet; a refusal is final.
type HTTPPoster struct {
	Client *http.Client
	// Tries and Wait bound the retries (default 5 tries, 2 s apart).
	Tries int
	Wait  time.Duration
}

// ErrRefused is a report provisiond answered with a 4xx: the nonce was
// wrong or used, or the request did not come from the machine's address.
var ErrRefused = errors.New("report refused")

// Post implements Poster.
func (h HTTPPoster) Post(ctx context.Context, url string, rep *commission.Report) error {
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	c := h.Client
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	tries, wait := h.Tries, h.Wait
	if tries <= 0 {
		tries = 5
	}
	if wait <= 0 {
		wait = 2 * time.Second
	}
	var last error
	for i := 0; i < tries; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (after %v)", ctx.Err(), last)
			case <-time.After(wait):
			}
		}
		last = h.once(ctx, c, url, body)
		if last == nil || errors.Is(last, ErrRefused) {
			return last
		}
	}
	return fmt.Errorf("posting the report to %s: %d tries: %w", redact(url), tries, last)
}

func (h HTTPPoster) once(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4:
		return fmt.Errorf("%w: %s: %s", ErrRefused, resp.Status, bytes.TrimSpace(msg))
	}
	return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
}

// redact drops the nonce from a URL for the console.
func redact(u string) string {
	if i := bytes.IndexByte([]byte(u), '?'); i >= 0 {
		return u[:i]
	}
	return u
}
