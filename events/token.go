package events

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// TokenPrefix starts every token this version of converge writes. A token
// whose prefix differs was written by another format version and is refused
// with ErrTokenVersion rather than being misread.
//
// Format v2 (this one) encodes the 16 bytes of a token, big-endian, in a
// base64 alphabet listed in ASCII order, so token strings sort like tokens.
// Format v1 used base64url, whose alphabet is not in ASCII order, so its
// strings did not sort in feed order; v1 was never released and is refused
// with ErrTokenVersion (obtain a fresh token).
const TokenPrefix = "v2."

// tokenBodyLen is the length of the body: 16 bytes, unpadded, 6 bits a
// character.
const tokenBodyLen = 22

// tokenAlphabet is URL- and header-safe like base64url's, but in ASCII order
// ('-' < '0'-'9' < 'A'-'Z' < '_' < 'a'-'z'), so that with a fixed width and
// big-endian bytes, comparing strings compares tokens.
const tokenAlphabet = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

var tokenEncoding = base64.NewEncoding(tokenAlphabet).WithPadding(base64.NoPadding).Strict()

// ErrInvalidToken is wrapped by every token parse error. Check it with
// errors.Is to answer a client with 400 Bad Request.
var ErrInvalidToken = errors.New("invalid consistency token")

// ErrTokenVersion is wrapped (beside ErrInvalidToken) when a token was
// written by another token format version.
var ErrTokenVersion = errors.New("consistency token from another format version")

// Token is a position in the global order of events. Every append returns the
// token of its last event; a read model whose checkpoint is at or past a token
// reflects every event up to and including it.
//
// The zero Token is the position before the first event. Tokens compare in
// feed order with Compare. Their String forms sort the same way, byte by
// byte (a.Before(b) == (a.String() < b.String())): the body has a fixed
// width and an alphabet in ASCII order, so a client may keep the greatest
// token string it has seen without parsing it.
//
// A Token has two parts so that the PostgreSQL store can order events by the
// transaction horizon first and the insertion sequence second (see the
// pgstore package doc); the in-memory store uses the same shape. Treat both
// parts as opaque.
type Token struct {
	major uint64
	minor uint64
}

// MakeToken builds a token from its two parts. It is for store
// implementations; applications get tokens from appends and envelopes.
func MakeToken(major, minor uint64) Token { return Token{major: major, minor: minor} }

// Major is the first ordering part (the PostgreSQL store's ordering key).
func (t Token) Major() uint64 { return t.major }

// Minor is the second ordering part (the insertion sequence).
func (t Token) Minor() uint64 { return t.minor }

// IsZero reports whether t is the position before the first event.
func (t Token) IsZero() bool { return t == Token{} }

// Compare returns -1 if t is before u in the global order, 0 if they are the
// same position, +1 if t is after u.
func (t Token) Compare(u Token) int {
	switch {
	case t.major < u.major:
		return -1
	case t.major > u.major:
		return 1
	case t.minor < u.minor:
		return -1
	case t.minor > u.minor:
		return 1
	}
	return 0
}

// Before reports whether t is strictly before u.
func (t Token) Before(u Token) bool { return t.Compare(u) < 0 }

// After reports whether t is strictly after u.
func (t Token) After(u Token) bool { return t.Compare(u) > 0 }

// Max returns the later of t and u.
func (t Token) Max(u Token) Token {
	if t.Before(u) {
		return u
	}
	return t
}

// String encodes t as an opaque, URL- and header-safe string.
func (t Token) String() string {
	var b [tokenLen]byte
	return string(t.appendText(b[:0]))
}

// tokenLen is the length of a token's string form.
const tokenLen = len(TokenPrefix) + tokenBodyLen

// appendText appends the string form of t to dst. Tokens are written on
// every delivery and in every row that holds one: built in place, a token
// costs one allocation, the result's, where encoding then concatenating
// took two or three.
func (t Token) appendText(dst []byte) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], t.major)
	binary.BigEndian.PutUint64(b[8:], t.minor)
	return tokenEncoding.AppendEncode(append(dst, TokenPrefix...), b[:])
}

// MarshalText implements encoding.TextMarshaler, so tokens travel in JSON as
// their string form.
func (t Token) MarshalText() ([]byte, error) { return t.appendText(make([]byte, 0, tokenLen)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Token) UnmarshalText(b []byte) error {
	p, err := ParseToken(string(b))
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// ParseToken decodes a token written by Token.String. Every failure wraps
// ErrInvalidToken; a token from another format version also wraps
// ErrTokenVersion.
func ParseToken(s string) (Token, error) {
	if s == "" {
		return Token{}, fmt.Errorf("%w: empty string (omit the token to read without waiting)", ErrInvalidToken)
	}
	if strings.HasPrefix(s, "v1.") {
		return Token{}, fmt.Errorf("%w: %w: format v1 tokens are no longer read, because their strings did not sort in feed order (obtain a fresh token from a write or a read)",
			ErrInvalidToken, ErrTokenVersion)
	}
	if !strings.HasPrefix(s, TokenPrefix) {
		if i := strings.IndexByte(s, '.'); i > 0 && i <= 4 && s[0] == 'v' {
			return Token{}, fmt.Errorf("%w: %w: got prefix %q, this build reads %q (upgrade converge or obtain a fresh token)",
				ErrInvalidToken, ErrTokenVersion, s[:i+1], TokenPrefix)
		}
		return Token{}, fmt.Errorf("%w: missing %q prefix (pass the token exactly as a write returned it)", ErrInvalidToken, TokenPrefix)
	}
	body := s[len(TokenPrefix):]
	if len(body) != tokenBodyLen {
		// Shorter is most often a token cut in transit; longer, one with
		// something glued to it.
		hint := "was the token truncated?"
		if len(body) > tokenBodyLen {
			hint = "is something appended to the token?"
		}
		return Token{}, fmt.Errorf("%w: body has %d characters, want %d (%s)", ErrInvalidToken, len(body), tokenBodyLen, hint)
	}
	if strings.Trim(body, tokenAlphabet) != "" {
		return Token{}, fmt.Errorf("%w: body is not 22 characters of the token alphabet (pass the token exactly as a write returned it)", ErrInvalidToken)
	}
	// 22 characters carry 132 bits for 128: the last character's low 4
	// bits are unused and always zero in a token String wrote. Anything
	// else is a hand-made or altered token, which the strict decoder
	// refuses; saying "not of the alphabet" would send the reader looking
	// for a character that is not there.
	if strings.IndexByte(tokenAlphabet, body[tokenBodyLen-1])&0xf != 0 {
		return Token{}, fmt.Errorf("%w: last character %q cannot end a token: its 4 unused bits must be zero, so a token ends in -, F, V or k; converge did not write this one (pass the token exactly as a write returned it)",
			ErrInvalidToken, body[tokenBodyLen-1])
	}
	// The checks above leave the decoder nothing to refuse; this guards
	// against one that reads otherwise than they assume.
	var raw [16]byte
	if n, err := tokenEncoding.Decode(raw[:], []byte(body)); err != nil || n != len(raw) {
		return Token{}, fmt.Errorf("%w: body does not decode to 16 bytes (pass the token exactly as a write returned it)", ErrInvalidToken)
	}
	return Token{major: binary.BigEndian.Uint64(raw[:8]), minor: binary.BigEndian.Uint64(raw[8:])}, nil
}
