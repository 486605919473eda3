package store

import "strings"

// Fields says which parts of a Key a dimension counts. Combine them with |:
// IP|Username counts each (IP, username) pair separately.
type Fields uint8

// The fields of a Key that a dimension can count.
const (
	IP        Fields = 1 << iota // the client IP, grouped by Policy.IPv6Prefix for IPv6
	Username                     // the username, after Policy.NormalizeUsername
	UserAgent                    // the User-Agent header as sent

)

// allFields are the fields there are.
const allFields = IP | Username | UserAgent

// String returns the fields joined by "+", such as "ip+username", or "none".
func (f Fields) String() string {
	if f == 0 {
		return "none"
	}
	var b strings.Builder
	for _, x := range [...]struct {
		f    Fields
		name string
	}{{IP, "ip"}, {Username, "username"}, {UserAgent, "user_agent"}} {
		if f&x.f != 0 {
			if b.Len() > 0 {
				b.WriteByte('+')
			}
			b.WriteString(x.name)
		}
	}
	if f&^allFields != 0 {
		if b.Len() > 0 {
			b.WriteByte('+')
		}
		b.WriteString("unknown")
	}
	return b.String()
}
