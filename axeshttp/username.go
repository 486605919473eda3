package axeshttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// Username says where the middleware finds the username of a login attempt.
// Build one with FormField, JSONField, BasicAuth or UsernameFunc; the zero
// Username extracts nothing, so attempts are counted with an empty username
// (enough for a policy that locks out by IP only).
//
// The sources that read the body read at most the middleware's MaxBodyBytes
// and put the body back, byte for byte, for the next handler.
type Username struct {
	kind  usernameKind
	field string
	fn    func(*http.Request) string
}

type usernameKind uint8

const (
	usernameNone usernameKind = iota
	usernameForm
	usernameJSON
	usernameBasic
	usernameFunc
)

// FormField finds the username in the form field name, as
// http.Request.FormValue would: the first value in an
// application/x-www-form-urlencoded body, then the URL query; for a
// multipart/form-data body, the URL query first, then the body's parts.
// django-axes' default is FormField("username").
func FormField(name string) Username { return Username{kind: usernameForm, field: name} }

// JSONField finds the username in the top-level member name of a JSON object
// body, matched as encoding/json matches a struct field: case-insensitively,
// the last matching string member winning (null and other types are
// skipped, as encoding/json leaves a string field alone for them). A body
// that is not a JSON object gives the empty username.
func JSONField(name string) Username { return Username{kind: usernameJSON, field: name} }

// BasicAuth finds the username in the request's HTTP Basic Authorization
// header.
func BasicAuth() Username { return Username{kind: usernameBasic} }

// UsernameFunc finds the username with f. f must not consume the request
// body (use FormField or JSONField for usernames in the body) and must be
// safe for concurrent use.
func UsernameFunc(f func(*http.Request) string) Username {
	return Username{kind: usernameFunc, fn: f}
}

// errBodyTooLarge reports a body over the configured bound.
var errBodyTooLarge = errors.New("axes: request body too large")

// extract returns the username of r. It may replace r.Body with a buffered
// copy of it; it fails only when the body is larger than max.
func (u Username) extract(w http.ResponseWriter, r *http.Request, max int64) (string, error) {
	switch u.kind {
	case usernameBasic:
		name, _, _ := r.BasicAuth()
		return name, nil
	case usernameFunc:
		return u.fn(r), nil
	case usernameForm:
		return u.fromForm(w, r, max)
	case usernameJSON:
		body, err := bufferBody(w, r, max)
		if err != nil {
			return "", err
		}
		return jsonMember(body, u.field), nil
	}
	return "", nil
}

func (u Username) fromForm(w http.ResponseWriter, r *http.Request, max int64) (string, error) {
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded":
		body, err := bufferBody(w, r, max)
		if err != nil {
			return "", err
		}
		// ParseQuery keeps the pairs it could parse when it reports an
		// error, as Request.ParseForm does.
		vs, _ := url.ParseQuery(string(body))
		if v, ok := vs[u.field]; ok && len(v) > 0 {
			return v[0], nil
		}
		return r.URL.Query().Get(u.field), nil
	case "multipart/form-data":
		if v, ok := r.URL.Query()[u.field]; ok && len(v) > 0 {
			return v[0], nil
		}
		body, err := bufferBody(w, r, max)
		if err != nil {
			return "", err
		}
		return multipartValue(body, params["boundary"], u.field), nil
	}
	return r.URL.Query().Get(u.field), nil
}

// bufferBody reads r.Body, at most max bytes with http.MaxBytesReader
// semantics (a larger body is an error, and the server closes the
// connection after the response), and replaces it with a copy that the
// next handler reads as if untouched.
func bufferBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, errBodyTooLarge
	}
	orig := r.Body
	data, err := io.ReadAll(http.MaxBytesReader(w, orig, max))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errBodyTooLarge
		}
		// A body that broke off mid-way: hand the next handler what
		// arrived followed by the same error.
		r.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(data), errReader{err}), closer: orig}
		return data, nil
	}
	r.Body = &replayBody{Reader: bytes.NewReader(data), closer: orig}
	return data, nil
}

type replayBody struct {
	io.Reader
	closer io.Closer
}

func (b *replayBody) Close() error { return b.closer.Close() }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// jsonMember returns the string value of the last top-level member of the
// JSON object body whose name matches field case-insensitively.
func jsonMember(body []byte, field string) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	name := ""
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return name
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return name
		}
		// As encoding/json decoding into a string field: null and values
		// of other types leave the field as it was.
		var s string
		if strings.EqualFold(key, field) && string(raw) != "null" && json.Unmarshal(raw, &s) == nil {
			name = s
		}
	}
	return name
}

// multipartValue returns the first non-file part named field of a
// multipart body.
func multipartValue(body []byte, boundary, field string) string {
	if boundary == "" {
		return ""
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextPart()
		if err != nil {
			return ""
		}
		if p.FormName() == field && p.FileName() == "" {
			v, err := io.ReadAll(p)
			if err != nil {
				return ""
			}
			return string(v)
		}
	}
}
