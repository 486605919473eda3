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

// FuzzFormField: no panic; a refusal is a 400 or 413; otherwise the body
// reaches the next handler unchanged, and the counted username is what
// FormValue and PostFormValue return on the request the handler gets, and
// on a copy of the request that net/http parses on its own.
func FuzzFormField(f *testing.F) {
	f.Add("POST", "", "application/x-www-form-urlencoded", "username=bob&password=x")
	f.Add("POST", "username=eve", "application/x-www-form-urlencoded", "username=bob")
	f.Add("POST", "username=eve", "application/x-www-form-urlencoded; charset=utf-8", "password=x")
	f.Add("PUT", "username=bob", "application/x-www-form-urlencoded", "username=bob")
	f.Add("DELETE", "username=victim", "application/x-www-form-urlencoded", "username=decoy")
	f.Add("POST", "", "application/x-www-form-urlencoded", "username=%zz&username=b%C3%B6b;x")
	f.Add("POST", "", "multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nbob\r\n--X--\r\n")
	f.Add("DELETE", "", "multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nbob\r\n--X--\r\n")
	f.Add("POST", "username=q", "multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"username\"; filename=\"a\"\r\n\r\nfile\r\n--X--\r\n")
	f.Add("POST", "", "multipart/form-data; boundary=\"", "--")
	f.Add("POST", "a=%", "text/plain", "username=x")
	f.Add("PATCH", "", "Application/X-WWW-Form-URLEncoded", "Username=a&username=b")
	f.Fuzz(func(t *testing.T, method, query, ctype, body string) {
		if !validMethod(method) {
			return
		}
		mk := func() *http.Request {
			return &http.Request{
				Method:        method,
				URL:           &url.URL{Path: "/login", RawQuery: query},
				Header:        http.Header{"Content-Type": {ctype}},
				Body:          io.NopCloser(strings.NewReader(body)),
				ContentLength: int64(len(body)),
			}
		}
		r := mk()
		got, err := FormField("username").extract(httptest.NewRecorder(), r, 1<<20)
		if err != nil {
			if ref, ok := err.(*refusal); !ok || ref.status != 400 && ref.status != 413 {
				t.Fatalf("extract: %v", err)
			}
			return
		}
		if fv, pv := r.FormValue("username"), r.PostFormValue("username"); fv != got || pv != got {
			t.Fatalf("counted %q, handler's FormValue %q, PostFormValue %q", got, fv, pv)
		}
		ref := mk()
		if fv, pv := ref.FormValue("username"), ref.PostFormValue("username"); fv != got || pv != got {
			t.Fatalf("counted %q, net/http alone: FormValue %q, PostFormValue %q", got, fv, pv)
		}
		if b, _ := io.ReadAll(r.Body); string(b) != body {
			t.Fatalf("body changed: %q, want %q", b, body)
		}
	})
}

func validMethod(m string) bool {
	return m != "" && validHeaderName(m)
}

// FuzzJSONField: no panic; a body is refused exactly when encoding/json
// cannot decode it into a struct with the username field, and otherwise the
// counted username is the struct's, by json.Unmarshal and json.Decoder.
func FuzzJSONField(f *testing.F) {
	for _, s := range []string{
		`{"username":"bob"}`, `{"Username":"a","USERNAME":"b"}`, `{"username":"a","username":null}`,
		`{"username":1,"username":"b"}`, `{"userName":"\u212a"}`, `{"user\u017fame":"x"}`, `[1]`, `{"a":{"username":"x"}}`,
		`null`, ` {"username":"a"} `, `{"username":"a"} x`, `{"username":"\ud800"}`, "{\"username\":\"\xff\"}",
	} {
		f.Add(s)
	}
	src := JSONField("username")
	f.Fuzz(func(t *testing.T, body string) {
		got, err := decodeJSONUsername(src.jsonType, []byte(body))
		var v struct {
			Password string `json:"password"`
			Username string `json:"username"`
		}
		uerr := json.Unmarshal([]byte(body), &v)
		if (err != nil) != (uerr != nil) && !isOtherFieldError(uerr) {
			t.Fatalf("refused %v, encoding/json error %v", err, uerr)
		}
		if err != nil {
			return
		}
		if v.Username != got {
			t.Fatalf("counted %q, json.Unmarshal %q", got, v.Username)
		}
		var d struct {
			Username string `json:"username"`
		}
		if derr := json.NewDecoder(strings.NewReader(body)).Decode(&d); derr != nil || d.Username != got {
			t.Fatalf("counted %q, json.Decoder %q (%v)", got, d.Username, derr)
		}
	})
}

// isOtherFieldError reports whether err is encoding/json's complaint about a
// field other than the username, which the middleware does not look at.
func isOtherFieldError(err error) bool {
	te, ok := err.(*json.UnmarshalTypeError)
	return ok && strings.EqualFold(te.Field, "password")
}
