package talos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Factory is an Image Factory (https://factory.talos.dev or a mirror).
type Factory struct {
	// BaseURL is the factory's URL without a trailing slash.
	BaseURL string
	// HTTP is the client; nil means http.DefaultClient.
	HTTP *http.Client
}

func (f *Factory) client() *http.Client {
	if f.HTTP != nil {
		return f.HTTP
	}
	return http.DefaultClient
}

// Register posts the schematic to the factory (which then serves images for
// it) and checks that the factory's ID is the one computed here.
func (f *Factory) Register(ctx context.Context, s Schematic) (string, error) {
	want, err := s.ID()
	if err != nil {
		return "", err
	}
	body, _ := s.YAML()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url("/schematics"), bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("the Image Factory URL %q: %w", f.BaseURL, err)
	}
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := f.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("the Image Factory at %s cannot be reached: %w (check the network, set talos.factory_url to a mirror, or pull the assets while online with provisiond assets pull talos)", f.BaseURL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("the Image Factory at %s refused the schematic: %s: %s", f.BaseURL, resp.Status, strings.TrimSpace(string(raw)))
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("the Image Factory at %s answered the schematic with something that is not JSON: %q", f.BaseURL, raw)
	}
	if out.ID != want {
		return out.ID, fmt.Errorf("the Image Factory at %s gave schematic ID %s, provisiond computed %s: is it a factory of another version?", f.BaseURL, out.ID, want)
	}
	return out.ID, nil
}

func (f *Factory) url(p string) string {
	return strings.TrimRight(f.BaseURL, "/") + p
}

// Asset names the Image Factory serves for PXE booting an architecture.
func Assets(arch string) (kernel, initramfs, cmdline string) {
	return "kernel-" + arch, "initramfs-" + arch + ".xz", "cmdline-metal-" + arch
}

// AssetURL is the URL of a schematic's file for a Talos version.
func (f *Factory) AssetURL(id, version, file string) string {
	return f.url("/image/" + id + "/" + version + "/" + file)
}
