package axeshttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
)

// Username says where the middleware finds the username of a login attempt.
// Build one with FormField, JSONField, BasicAuth or UsernameFunc; the zero
// Username extracts nothing, so attempts are counted with an empty username
// (enough for a policy that locks out by IP only).
//
// The username counted must be the one whose password the handler checks,
// or an attacker guesses one account's password while being counted under
// other names. FormField and JSONField therefore do not imitate the
// handler's parser: they run it. They read the whole body first (at most the
// middleware's MaxBodyBytes, whatever the method and content type), and
// answer the request themselves, without counting it or calling the
// handler, when it could be read two ways: 413 Request Entity Too Large for
// a body over the bound, 400 Bad Request for a body that breaks off or does
// not parse, or a username that the handler's ways of reading it disagree
// on. The handler then reads the same bytes: the body is put back, byte for
// byte.
type Username struct {
	kind     usernameKind
	field    string
	jsonType reflect.Type // for JSONField: struct{ Username string `json:"<field>"` }
	fn       func(*http.Request) string
}

type usernameKind uint8

const (
	usernameNone usernameKind = iota
	usernameForm
	usernameJSON
	usernameBasic
	usernameFunc
)

// FormField finds the username in the form field name, parsing the request
// with net/http's own Request.ParseForm and Request.ParseMultipartForm
// (with the memory bound FormValue uses) before the handler runs. The
// handler's later FormValue, PostFormValue, ParseForm or ParseMultipartForm
// find the form already parsed, so they read exactly what was counted.
// (Request.MultipartReader, which streams the body instead, then reports an
// error: read the parsed MultipartForm.)
//
// The request is answered 400, and not counted, when parsing reports any
// error (a body that breaks off, a malformed escape, a multipart body
// without its closing boundary, a url-encoded body over net/http's 10 MB
// bound), or when Request.FormValue, Request.PostFormValue and the URL query
// do not agree on the username. In particular the username must come in
// the body: a query that names the field is refused unless the form body
// holds the same first value, and so is every request whose form body
// net/http does not read (a url-encoded body sent with a method other than
// POST, PUT or PATCH) when its query names the field. django-axes' default
// is FormField("username").
func FormField(name string) Username { return Username{kind: usernameForm, field: name} }

// JSONField finds the username in the member name of a JSON object body,
// by decoding the body with encoding/json into a struct whose one field is
// a string tagged `json:"name"`. It yields what the handler's json.Unmarshal
// or json.Decoder yields for such a field: names matched case-insensitively,
// the last match winning, null leaving the field alone. A body that this
// decode rejects (not JSON, trailing data after the value, a username that
// is not a string or null, an empty body) is answered 400 without being
// counted or reaching the handler. A top-level null counts the empty
// username, as it leaves the struct empty. The content type and method are
// not looked at, as a handler decoding the body does not look at them.
//
// WithUsername reports an error for a name that encoding/json cannot match
// to a tagged field (empty, "-", or holding a comma, a quote or a
// backslash).
func JSONField(name string) Username {
	u := Username{kind: usernameJSON, field: name}
	typ := reflect.StructOf([]reflect.StructField{{
		Name: "Username",
		Type: reflect.TypeFor[string](),
		Tag:  reflect.StructTag(`json:` + strconv.Quote(name)),
	}})
	// Keep the type only if encoding/json honours the tag: an invalid tag
	// name would silently fall back to the Go field name.
	if key, err := json.Marshal(name); err == nil {
		if got, err := decodeJSONUsername(typ, []byte(`{`+string(key)+`:"probe"}`)); err == nil && got == "probe" {
			u.jsonType = typ
		}
	}
	return u
}

// BasicAuth finds the username in the request's HTTP Basic Authorization
// header.
func BasicAuth() Username { return Username{kind: usernameBasic} }

// UsernameFunc finds the username with f. f must not consume the request
// body (use FormField or JSONField for usernames in the body) and must be
// safe for concurrent use. f is trusted to read the username the way the
// handler does.
func UsernameFunc(f func(*http.Request) string) Username {
	return Username{kind: usernameFunc, fn: f}
}

// validate reports a Username that cannot work.
func (u Username) validate() error {
	switch {
	case u.kind == usernameFunc && u.fn == nil:
		return errors.New("axes: UsernameFunc(nil)")
	case u.kind == usernameJSON && u.jsonType == nil:
		return fmt.Errorf("axes: JSONField(%q): encoding/json cannot match a struct field tagged with this name", u.field)
	}
	return nil
}

// A refusal is a request that the middleware answers itself, uncounted and
// without calling the handler: its body cannot be read whole, or the
// handler could read a username other than the one the middleware would
// count.
type refusal struct {
	status int    // 400 or 413
	msg    string // the response body
	close  bool   // the connection cannot be trusted any more
}

func (e *refusal) Error() string { return "axes: " + e.msg }

var (
	errTooLarge  = &refusal{http.StatusRequestEntityTooLarge, "request body too large", true}
	errBroken    = &refusal{http.StatusBadRequest, "request body could not be read", true}
	errForm      = &refusal{http.StatusBadRequest, "malformed form", false}
	errAmbiguous = &refusal{http.StatusBadRequest, "ambiguous username: send it once, in the form body", false}
	errJSON      = &refusal{http.StatusBadRequest, "malformed JSON body", false}
)

// multipartMemory is the maxMemory that Request.FormValue and
// PostFormValue pass to ParseMultipartForm (net/http's defaultMaxMemory).
const multipartMemory = 32 << 20

// maxFormSize is net/http's bound on a url-encoded body read by ParseForm.
const maxFormSize = 10 << 20

// extract returns the username of r, or a *refusal. FormField and
// JSONField replace r.Body with a buffered copy of it; FormField also
// leaves r's form parsed.
// uncounted returns r as a pass-through request reaches the handler: with
// no body, under FormField without the username field in its query, and
// under BasicAuth without its Authorization header, so that no handler can
// check a credential the middleware did not count.
func (u Username) uncounted(r *http.Request) *http.Request {
	q := r.URL.RawQuery
	if u.kind == usernameForm && q != "" {
		vals, err := url.ParseQuery(q)
		if _, named := vals[u.field]; named || err != nil {
			// A query that does not parse is dropped whole: what
			// ParseForm would make of it is not the middleware's guess.
			delete(vals, u.field)
			q = ""
			if err == nil {
				q = vals.Encode()
			}
		}
	}
	noBody := r.Body == nil || r.Body == http.NoBody
	basic := u.kind == usernameBasic && r.Header.Get("Authorization") != ""
	if q == r.URL.RawQuery && noBody && !basic {
		return r
	}
	r2 := r.Clone(r.Context())
	if basic {
		r2.Header.Del("Authorization")
	}
	r2.URL.RawQuery = q
	r2.Form, r2.PostForm, r2.MultipartForm = nil, nil, nil
	r2.Body, r2.ContentLength = http.NoBody, 0
	r2.Header.Del("Content-Length")
	r2.TransferEncoding = nil
	return r2
}

func (u Username) extract(w http.ResponseWriter, r *http.Request, limit int64) (string, error) {
	switch u.kind {
	case usernameBasic:
		name, _, _ := r.BasicAuth()
		return name, nil
	case usernameFunc:
		return u.fn(r), nil
	case usernameForm:
		body, err := readBody(w, r, limit)
		if err != nil {
			return "", err
		}
		return formUsername(r, body, u.field)
	case usernameJSON:
		body, err := readBody(w, r, limit)
		if err != nil {
			return "", err
		}
		if jsonKeyRepeats(body, u.field) {
			return "", errAmbiguous
		}
		return decodeJSONUsername(u.jsonType, body)
	}
	return "", nil
}

// readBody reads the whole of r.Body, at most max bytes with
// http.MaxBytesReader semantics (a larger body is refused, and the server
// closes the connection after the response), and replaces it with a copy
// that the next reader reads as if untouched. A body that breaks off is
// refused: the handler's parser would fail on it and might fall back to
// something else.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		r.Body = http.NoBody
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	orig := r.Body
	data, err := io.ReadAll(http.MaxBytesReader(w, orig, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errTooLarge
		}
		return nil, errBroken
	}
	r.Body = &replayBody{Reader: bytes.NewReader(data), closer: orig}
	return data, nil
}

// formUsername parses the form of r, whose body has been read into body, as
// FormValue would (ParseForm, then ParseMultipartForm), and returns the
// value of field that FormValue, PostFormValue and the URL query all agree
// on.
func formUsername(r *http.Request, body []byte, field string) (string, error) {
	closer := io.Closer(http.NoBody)
	if rb, ok := r.Body.(*replayBody); ok {
		closer = rb.closer
	}
	defer func() { r.Body = &replayBody{Reader: bytes.NewReader(body), closer: closer} }()
	if err := r.ParseForm(); err != nil {
		if len(body) > maxFormSize {
			return "", errTooLarge
		}
		return "", errForm
	}
	if err := r.ParseMultipartForm(multipartMemory); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		return "", errForm
	}
	name := r.FormValue(field)
	if r.PostFormValue(field) != name {
		return "", errAmbiguous
	}
	// Every value of the field must be the one counted: a handler that
	// reads the last value (r.Form[field], form decoders) must not check
	// another name.
	for _, v := range r.Form[field] {
		if v != name {
			return "", errAmbiguous
		}
	}
	// ParseForm has checked the query's syntax, so Query sees what it saw.
	if r.URL != nil {
		if q := r.URL.Query()[field]; len(q) > 0 && q[0] != name {
			return "", errAmbiguous
		}
	}
	return name, nil
}

// decodeJSONUsername decodes body into a new value of typ, a struct with
// one string field, with json.Unmarshal, and returns the field.
// jsonKeyRepeats reports whether the top-level object of body has more
// than one key that encoding/json would match to field (case-insensitively):
// json.Unmarshal into a struct takes the last, a map[string]any reader the
// exact one, so they could check different names.
func jsonKeyRepeats(body []byte, field string) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false // not an object: decodeJSONUsername refuses it or finds no key
	}
	seen := 0
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		if k, ok := t.(string); ok && strings.EqualFold(k, field) {
			if seen++; seen > 1 {
				return true
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

func decodeJSONUsername(typ reflect.Type, body []byte) (string, error) {
	v := reflect.New(typ)
	if err := json.Unmarshal(body, v.Interface()); err != nil {
		return "", errJSON
	}
	return v.Elem().Field(0).String(), nil
}

type replayBody struct {
	io.Reader
	closer io.Closer
}

func (b *replayBody) Close() error { return b.closer.Close() }
