package axeshttp

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzFormField: no panic, the body reaches the next handler unchanged, and
// whenever the handler's FormValue sees a username, it is the one counted.
// (When the standard library rejects a malformed multipart body, FormValue
// sees none; counting a name then gives an attacker nothing.)
func FuzzFormField(f *testing.F) {
	f.Add("", "application/x-www-form-urlencoded", "username=bob&password=x")
	f.Add("username=eve", "application/x-www-form-urlencoded", "username=bob")
	f.Add("username=eve", "application/x-www-form-urlencoded; charset=utf-8", "password=x")
	f.Add("", "application/x-www-form-urlencoded", "username=%zz&username=b%C3%B6b;x")
	f.Add("", "multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nbob\r\n--X--\r\n")
	f.Add("username=q", "multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"username\"; filename=\"a\"\r\n\r\nfile\r\n--X--\r\n")
	f.Add("", "multipart/form-data; boundary=\"", "--")
	f.Add("a=%", "text/plain", "username=x")
	f.Fuzz(func(t *testing.T, query, ctype, body string) {
		mk := func() *http.Request {
			return &http.Request{
				Method:        http.MethodPost,
				URL:           &url.URL{Path: "/login", RawQuery: query},
				Header:        http.Header{"Content-Type": {ctype}},
				Body:          io.NopCloser(strings.NewReader(body)),
				ContentLength: int64(len(body)),
			}
		}
		r := mk()
		got, err := FormField("username").extract(httptest.NewRecorder(), r, 1<<20)
		if err != nil {
			t.Fatalf("extract: %v", err)
		}
		if b, _ := io.ReadAll(r.Body); string(b) != body {
			t.Fatalf("body changed: %q, want %q", b, body)
		}
		if ref := mk().FormValue("username"); ref != "" && ref != got {
			t.Fatalf("counted %q, FormValue %q", got, ref)
		}
	})
}

// FuzzJSONField: no panic, and for every body that encoding/json decodes
// into a struct, the counted username is the struct's.
func FuzzJSONField(f *testing.F) {
	for _, s := range []string{
		`{"username":"bob"}`, `{"Username":"a","USERNAME":"b"}`, `{"username":"a","username":null}`,
		`{"username":1,"username":"b"}`, `{"userName":"\u212a"}`, `{"user\u017fame":"x"}`, `[1]`, `{"a":{"username":"x"}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got := jsonMember([]byte(body), "username")
		var v struct {
			Username string `json:"username"`
		}
		if err := json.Unmarshal([]byte(body), &v); err == nil && v.Username != got {
			t.Fatalf("counted %q, encoding/json %q", got, v.Username)
		}
	})
}
