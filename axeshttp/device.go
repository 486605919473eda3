package axeshttp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/axes-go/axes"
)

// Defaults of DeviceConfig.
const (
	// DefaultDeviceLifetime is how long a device cookie stays valid: 180 days.
	DefaultDeviceLifetime = 180 * 24 * time.Hour
	// DefaultDeviceCookie is the name of the device cookie. The __Host-
	// prefix makes browsers accept it only with Secure, Path=/ and no
	// Domain, so a sibling subdomain cannot plant one.
	DefaultDeviceCookie = "__Host-axes-device"
	// MinDeviceKeyBytes is the shortest key DeviceConfig.Keys accepts.
	MinDeviceKeyBytes = 32
)

// DeviceConfig configures NewDevices. Every field but Keys has a default.
type DeviceConfig struct {
	// Keys authenticate device cookies with HMAC-SHA256. The first key
	// signs new cookies; every key verifies. To rotate, put the new key
	// first and keep the old one listed until the cookies it signed have
	// expired (Lifetime), then drop it: the cookies only it verifies are
	// then untrusted. Each key must hold at least MinDeviceKeyBytes random
	// bytes, and stay secret: whoever holds it can mint trusted devices.
	Keys [][]byte

	// Lifetime is how long a cookie is valid after it is issued (default
	// DefaultDeviceLifetime); it is also the cookie's Max-Age. Shortening
	// it also shortens the cookies already issued.
	Lifetime time.Duration

	// Name is the cookie's name (default DefaultDeviceCookie).
	Name string
	// Path is the cookie's Path (default "/"; must be "/" for a __Host-
	// name).
	Path string
	// Domain is the cookie's Domain (default none, the host alone; must be
	// empty for a __Host- name).
	Domain string
	// Insecure leaves out the Secure attribute, for development over plain
	// HTTP only. It is refused for a __Host- or __Secure- name.
	Insecure bool
	// SameSite is the cookie's SameSite attribute (default
	// http.SameSiteLaxMode).
	SameSite http.SameSite

	// NormalizeUsername maps a username to the form the cookie is bound to
	// (default axes.DefaultNormalizeUsername). Set it to the limiter's
	// Policy.NormalizeUsername, so that a cookie is trusted for exactly the
	// usernames the limiter counts as its own.
	NormalizeUsername func(string) string

	// Now is the clock that issues and checks expiry (default time.Now).
	Now func() time.Time
}

// Devices issues and verifies device cookies, after OWASP's "Slow Down
// Online Guessing Attacks with Device Cookies": after a successful login,
// the browser gets a cookie binding its username to a random device
// identifier, authenticated with HMAC-SHA256 and valid for a lifetime. An
// attempt that presents a valid cookie for the username it tries is a
// trusted client: its axes.Key carries the device (Key.Device), so the
// limiter counts and locks it on its own, and an attack that locks the
// username does not lock its owner out of a browser they logged in from. A
// thief who steals a cookie gets that cookie's own Limit guesses, no more.
//
// Attempts without a cookie, or whose cookie is malformed, forged, expired,
// signed by a key no longer listed, or issued for another username, are
// untrusted and share the username's lockout as before: a bad cookie is
// never an error. The limiter's store needs nothing new: a device only
// changes the digests of the username's dimensions.
//
// Use it through the middleware (WithDevices), which verifies the cookie
// of every counted attempt and issues a fresh one on every success, or
// directly with Verify and Issue. The cookie holds no username: only a
// version, the expiry, the device identifier and the MAC. Devices is safe
// for concurrent use.
type Devices struct {
	keys      [][]byte
	lifetime  time.Duration
	name      string
	path      string
	domain    string
	secure    bool
	sameSite  http.SameSite
	normalize func(string) string
	now       func() time.Time
}

// The cookie value is the unpadded base64url form of
//
//	version (1 byte) | expiry, Unix seconds (8 bytes, big-endian) | device (16 random bytes) | MAC (32 bytes)
//
// where MAC is HMAC-SHA256 over deviceDomain, the first 25 bytes and the
// normalised username, length-prefixed.
const (
	deviceVersion = 1
	deviceNonce   = 16
	deviceSigned  = 1 + 8 + deviceNonce
	deviceRaw     = deviceSigned + sha256.Size
	deviceDomain  = "axes-go/device-cookie/v1\x00"
	// maxDeviceCookies bounds how many cookies of the name a request may
	// have checked, each costing one MAC per key.
	maxDeviceCookies = 4
)

var deviceEncoded = base64.RawURLEncoding.EncodedLen(deviceRaw)

// NewDevices returns Devices configured by cfg, or an error prefixed
// "axes:" if cfg is invalid.
func NewDevices(cfg DeviceConfig) (*Devices, error) {
	d := &Devices{
		lifetime:  cfg.Lifetime,
		name:      cfg.Name,
		path:      cfg.Path,
		domain:    cfg.Domain,
		secure:    !cfg.Insecure,
		sameSite:  cfg.SameSite,
		normalize: cfg.NormalizeUsername,
		now:       cfg.Now,
	}
	var errs []error
	if len(cfg.Keys) == 0 {
		errs = append(errs, errors.New("axes: DeviceConfig.Keys needs at least one key"))
	}
	for i, k := range cfg.Keys {
		if len(k) < MinDeviceKeyBytes {
			errs = append(errs, fmt.Errorf("axes: DeviceConfig.Keys[%d] has %d bytes, want at least %d", i, len(k), MinDeviceKeyBytes))
		}
		d.keys = append(d.keys, append([]byte(nil), k...))
	}
	switch {
	case d.lifetime == 0:
		d.lifetime = DefaultDeviceLifetime
	case d.lifetime < time.Second:
		errs = append(errs, fmt.Errorf("axes: DeviceConfig.Lifetime %v is shorter than a second", d.lifetime))
	}
	if d.name == "" {
		d.name = DefaultDeviceCookie
	}
	if d.path == "" {
		d.path = "/"
	}
	if d.sameSite == 0 || d.sameSite == http.SameSiteDefaultMode {
		d.sameSite = http.SameSiteLaxMode
	}
	if d.normalize == nil {
		d.normalize = axes.DefaultNormalizeUsername
	}
	if d.now == nil {
		d.now = time.Now
	}
	c := d.cookie("x", time.Second)
	if err := c.Valid(); err != nil {
		errs = append(errs, fmt.Errorf("axes: DeviceConfig: invalid cookie: %w", err))
	}
	if !strings.HasPrefix(d.path, "/") {
		errs = append(errs, fmt.Errorf("axes: DeviceConfig.Path %q must start with /", d.path))
	}
	hostPrefix := strings.HasPrefix(d.name, "__Host-")
	if hostPrefix && (d.path != "/" || d.domain != "") {
		errs = append(errs, fmt.Errorf("axes: DeviceConfig: a %q cookie needs Path / and no Domain", d.name))
	}
	if !d.secure && (hostPrefix || strings.HasPrefix(d.name, "__Secure-")) {
		errs = append(errs, fmt.Errorf("axes: DeviceConfig: a %q cookie cannot be Insecure", d.name))
	}
	if !d.secure && d.sameSite == http.SameSiteNoneMode {
		errs = append(errs, errors.New("axes: DeviceConfig: SameSite=None needs Secure"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return d, nil
}

// cookie is the device cookie with value v that lives for maxAge.
func (d *Devices) cookie(v string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{
		Name:     d.name,
		Value:    v,
		Path:     d.path,
		Domain:   d.domain,
		MaxAge:   int(maxAge / time.Second),
		Secure:   d.secure,
		HttpOnly: true,
		SameSite: d.sameSite,
	}
}

// Issue sets a fresh device cookie for username on w (a new device
// identifier, valid for the lifetime) and returns the device identifier.
// Call it after a successful login and before the response header is
// written; the middleware does so itself (WithDevices). It sets nothing
// and returns "" for a username that normalises to the empty string.
func (d *Devices) Issue(w http.ResponseWriter, username string) string {
	user := d.normalize(username)
	if user == "" {
		return ""
	}
	var raw [deviceRaw]byte
	raw[0] = deviceVersion
	exp := d.now().Add(d.lifetime).Unix()
	binary.BigEndian.PutUint64(raw[1:9], uint64(exp))
	_, _ = rand.Read(raw[9:deviceSigned]) // never fails (crypto/rand)
	copy(raw[deviceSigned:], d.sign(nil, d.keys[0], raw[:deviceSigned], user))
	http.SetCookie(w, d.cookie(base64.RawURLEncoding.EncodeToString(raw[:]), d.lifetime))
	return base64.RawURLEncoding.EncodeToString(raw[9:deviceSigned])
}

// Verify reports whether r carries a valid device cookie for username: one
// signed by a listed key, not expired, and bound to username after
// normalisation. It returns the cookie's device identifier, for
// axes.Key.Device. Anything else (no cookie, a malformed, forged or
// expired one, one for another username) is simply untrusted: ok is false.
// Only the first few cookies of the name are checked, and over-long ones
// are skipped unread.
func (d *Devices) Verify(r *http.Request, username string) (device string, ok bool) {
	if r == nil {
		return "", false
	}
	var user string
	normalized := false
	checked := 0
	for _, c := range r.CookiesNamed(d.name) {
		if checked == maxDeviceCookies {
			break
		}
		checked++
		if len(c.Value) != deviceEncoded {
			continue
		}
		if !normalized {
			user, normalized = d.normalize(username), true
			if user == "" {
				return "", false
			}
		}
		if dev, ok := d.verify(c.Value, user); ok {
			return dev, true
		}
	}
	return "", false
}

// verify checks one cookie value for the normalised username user.
func (d *Devices) verify(v, user string) (string, bool) {
	var raw [deviceRaw]byte
	if n, err := base64.RawURLEncoding.Decode(raw[:], []byte(v)); err != nil || n != deviceRaw || raw[0] != deviceVersion {
		return "", false
	}
	var mac [sha256.Size]byte
	good := false
	for _, k := range d.keys {
		if hmac.Equal(d.sign(mac[:0], k, raw[:deviceSigned], user), raw[deviceSigned:]) {
			good = true
			break
		}
	}
	if !good {
		return "", false
	}
	// The expiry is authenticated; a cookie lives no longer than the
	// current lifetime allows, even if it was issued under a longer one.
	exp := int64(binary.BigEndian.Uint64(raw[1:9]))
	now := d.now()
	if exp <= now.Unix() || exp > now.Add(d.lifetime).Unix()+1 {
		return "", false
	}
	return base64.RawURLEncoding.EncodeToString(raw[9:deviceSigned]), true
}

// sign appends to dst the MAC under key of the signed part of a cookie
// for the normalised username user.
func (d *Devices) sign(dst, key, signed []byte, user string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(deviceDomain))
	m.Write(signed)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(user)))
	m.Write(n[:])
	m.Write([]byte(user))
	return m.Sum(dst)
}

// WithDevices makes the middleware trust devices by their device cookies
// (see Devices): before each counted attempt it verifies the request's
// cookie for the attempt's username and, if it is valid, sets the
// axes.Key's Device, so the attempt is counted and locked apart from the
// username's untrusted clients. When the attempt succeeds it issues a fresh
// cookie: when the handler calls Succeeded before writing the response, or
// when the handler writes a success status (see SuccessStatus) without
// having reported. A handler that reports a failure with Failed must do so
// before writing a success status, or the failed attempt gets a cookie.
func WithDevices(d *Devices) Option {
	return func(c *config) {
		if d == nil {
			c.errs = append(c.errs, errors.New("axes: WithDevices(nil)"))
		}
		c.devices = d
	}
}
