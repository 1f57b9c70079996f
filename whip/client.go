package whip

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxAnswer bounds the answer (or error text) a client reads from a remote endpoint.
const maxAnswer = 256 << 10

// Client is a WHIP/WHEP client: POST an offer, get the answer and the session's resource, DELETE it at the end.
// It works against rtcrelay, MediaMTX and WCS (202 Accepted is taken as success too).
type Client struct {
	HTTP   *http.Client // nil: http.DefaultClient
	Token  string       // bearer token sent with every request ("" = none)
	Header http.Header  // extra headers of the POST (e.g. PathHeader)
}

// StatusError is an error status of the remote endpoint; Text is its body (e.g. "Stream not found").
type StatusError struct {
	Code int
	Text string
}

func (e *StatusError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("whip: remote answered %d %s", e.Code, http.StatusText(e.Code))
	}
	return e.Text
}

// Resource is one session at a remote endpoint.
type Resource struct {
	URL  string // absolute URL of the session resource (Location resolved against the endpoint)
	ETag string
	c    *Client
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	return hc.Do(req)
}

// Post sends offer to endpoint and returns the session resource and the answer.
func (c *Client) Post(ctx context.Context, endpoint, offer string) (*Resource, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return nil, "", fmt.Errorf("whip: %w", err)
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := c.do(req)
	if err != nil {
		return nil, "", fmt.Errorf("whip: POST %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, "", fmt.Errorf("whip: POST %s: read: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted {
		return nil, "", &StatusError{Code: resp.StatusCode, Text: strings.TrimSpace(string(body))}
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, "", fmt.Errorf("whip: POST %s: %d without Location", endpoint, resp.StatusCode)
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return nil, "", fmt.Errorf("whip: %w", err)
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return nil, "", fmt.Errorf("whip: Location %q: %w", loc, err)
	}
	return &Resource{URL: base.ResolveReference(ref).String(), ETag: resp.Header.Get("ETag"), c: c}, string(body), nil
}

// Delete ends the session at the remote.
func (r *Resource) Delete(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, r.URL, nil)
	if err != nil {
		return fmt.Errorf("whip: %w", err)
	}
	resp, err := r.c.do(req)
	if err != nil {
		return fmt.Errorf("whip: DELETE %s: %w", r.URL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode/100 != 2 {
		return &StatusError{Code: resp.StatusCode}
	}
	return nil
}

// ServerID asks endpoint for its rtcrelay server ID (OPTIONS, ServerIDHeader); "" for other servers.
func (c *Client) ServerID(ctx context.Context, endpoint string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, endpoint, nil)
	if err != nil {
		return "", fmt.Errorf("whip: %w", err)
	}
	resp, err := c.do(req)
	if err != nil {
		return "", fmt.Errorf("whip: OPTIONS %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	return resp.Header.Get(ServerIDHeader), nil
}
