package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// adminBackend talks to a process's admin API (axeshttp.NewAdmin).
type adminBackend struct {
	base  *url.URL
	token string
	c     *http.Client
}

func newAdminBackend(base, token string) (*adminBackend, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/") + "/")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("-admin %q is not an http(s) URL", base)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return nil, usagef("-admin %q would send the token in clear text; use https, or http to a loopback address only", base)
	}
	return &adminBackend{base: u, token: token, c: &http.Client{
		// The token must not follow a redirect to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// isLoopbackHost reports whether h names this machine: "localhost" or a
// loopback address literal (not a name that merely starts with "127.").
func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// maxAdminReply bounds what the command reads of an answer.
const maxAdminReply = 64 << 20

func (b *adminBackend) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(buf)
	}
	u := b.base.ResolveReference(&url.URL{Path: path})
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return fmt.Errorf("admin %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminReply))
	if err != nil {
		return fmt.Errorf("admin %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("admin %s refused the token (%s)", u.Redacted(), resp.Status)
		}
		return fmt.Errorf("admin %s: %s: %s", u.Redacted(), resp.Status, printable(msg))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin %s: unexpected answer: %w", u.Redacted(), err)
	}
	return nil
}

func (b *adminBackend) lockouts(ctx context.Context) ([]lockout, error) {
	var r struct {
		Count    int       `json:"count"`
		Lockouts []lockout `json:"lockouts"`
	}
	if err := b.do(ctx, http.MethodGet, "api/lockouts", nil, &r); err != nil {
		return nil, err
	}
	if r.Count > len(r.Lockouts) {
		return r.Lockouts, fmt.Errorf("the admin listed %d of %d lockouts", len(r.Lockouts), r.Count)
	}
	return r.Lockouts, nil
}

func (b *adminBackend) stats(ctx context.Context) ([]figure, error) {
	var raw json.RawMessage
	if err := b.do(ctx, http.MethodGet, "api/stats", nil, &raw); err != nil {
		return nil, err
	}
	return orderedFigures(raw)
}

// orderedFigures decodes a JSON object into figures in the order the
// server wrote them.
func orderedFigures(raw []byte) ([]figure, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("admin stats: not a JSON object")
	}
	var out []figure
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, figure{name, v})
	}
	return out, nil
}

func (b *adminBackend) reset(ctx context.Context, t target) (int, error) {
	body := map[string]any{}
	if t.ip != nil {
		body["ip"] = t.ip.String()
	}
	if t.username != nil {
		body["username"] = *t.username
	}
	if t.all {
		body["all"] = true
	}
	var r struct {
		Reset int `json:"reset"`
	}
	if err := b.do(ctx, http.MethodPost, "api/reset", body, &r); err != nil {
		return 0, err
	}
	return r.Reset, nil
}
