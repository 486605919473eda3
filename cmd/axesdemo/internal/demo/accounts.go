package demo

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/axes-go/axes"
)

// Account is a demo user. The passwords are printed on the login page: the
// demo is about the limiter, not about keeping these secret.
type Account struct {
	Username string
	Password string
}

// DemoAccounts are the accounts of the demo login server.
var DemoAccounts = []Account{
	{"alice", "correct-horse-battery"},
	{"bob", "hunter2-but-longer"},
	{"carol", "tr0ub4dor&3"},
	{"dave", "open-sesame-42"},
	{"erin", "blue-monday-1983"},
}

// passwords checks demo passwords. It keeps SHA-256 digests rather than the
// passwords so that every comparison has the same length, and it compares
// against a dummy digest for unknown users so that an unknown username costs
// the same as a wrong password.
type passwords struct {
	byName map[string][sha256.Size]byte
	dummy  [sha256.Size]byte
}

func newPasswords(accounts []Account) *passwords {
	p := &passwords{
		byName: make(map[string][sha256.Size]byte, len(accounts)),
		dummy:  sha256.Sum256([]byte("axesdemo: no such user")),
	}
	for _, a := range accounts {
		p.byName[axes.DefaultNormalizeUsername(a.Username)] = sha256.Sum256([]byte(a.Password))
	}
	return p
}

// check reports whether password is the password of username. Its time
// does not depend on whether the user exists or on how much of the password
// matches.
func (p *passwords) check(username, password string) bool {
	want, known := p.byName[axes.DefaultNormalizeUsername(username)]
	if !known {
		want = p.dummy
	}
	got := sha256.Sum256([]byte(password))
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	return match && known
}
