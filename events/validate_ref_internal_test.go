package events

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzValidatePayloadMatchesReference checks the scanner against its
// first, straightforward version (kept below as the oracle): the faster
// one, with its integer fast path and allocation-free key check, must
// accept and refuse exactly the same payloads.
func FuzzValidatePayloadMatchesReference(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":"\u0000"}`, `"\ud800"`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `[1e1000000]`, `1e-400`,
		`{"a":{"b":{"a":1}},"b":[{"a":1},{"a":1}]}`, `[123456789012345, -123456789012345, 1234567890123456789012, -0, 0]`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k3":3}`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":3}`,
		`[{"a":1},{"a":2,"b":{"a":3,"a":4}}]`, `{"\u00e9":1,"é":2}`, `[0.5e-3, -0, 1E+2, 1e400, 0.0000000000000000000001]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		want := referenceValidatePayload(p)
		got := ValidatePayload(p)
		require.Equal(t, want == nil, got == nil, "payload %q: reference %v, scanner %v", p, want, got)
		if want != nil {
			require.Equal(t, want.Error(), got.Error())
		}
	})
}

func referenceValidatePayload(p []byte) error {
	if !json.Valid(p) {
		return fmt.Errorf("is not valid JSON")
	}
	if !utf8.Valid(p) {
		return fmt.Errorf("is not valid UTF-8")
	}
	return (&refScanner{p: p}).scan()
}

// refScanner walks a document json.Valid accepted, so it checks content
// only, never syntax.
type refScanner struct {
	p     []byte
	i     int
	stack []*refFrame // nil entries are arrays
}

type refFrame struct {
	keys      map[string]struct{}
	expectKey bool
}

func (s *refScanner) scan() error {
	for s.i < len(s.p) {
		c := s.p[s.i]
		switch {
		case c == '{':
			s.stack = append(s.stack, &refFrame{expectKey: true})
			s.i++
		case c == '[':
			s.stack = append(s.stack, nil)
			s.i++
		case c == '}' || c == ']':
			s.stack = s.stack[:len(s.stack)-1]
			s.i++
		case c == ',':
			if top := s.top(); top != nil {
				top.expectKey = true
			}
			s.i++
		case c == '"':
			if err := s.str(); err != nil {
				return err
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if err := s.number(); err != nil {
				return err
			}
		default: // whitespace, ':', literals
			s.i++
		}
	}
	return nil
}

func (s *refScanner) top() *refFrame {
	if len(s.stack) == 0 {
		return nil
	}
	return s.stack[len(s.stack)-1]
}

// str checks the string starting at s.i and, when it is an object key,
// that the object has not had it before.
func (s *refScanner) str() error {
	start := s.i
	s.i++
	escaped := false
	for {
		c := s.p[s.i]
		if c == '"' {
			s.i++
			break
		}
		if c != '\\' {
			s.i++
			continue
		}
		escaped = true
		if s.p[s.i+1] != 'u' {
			s.i += 2
			continue
		}
		r := hex4(s.p[s.i+2 : s.i+6])
		s.i += 6
		switch {
		case r == 0:
			return fmt.Errorf("contains a NUL character (\\u0000), which PostgreSQL cannot store (remove it or encode the data, e.g. as base64)")
		case utf16IsHigh(r):
			if s.i+6 > len(s.p) || s.p[s.i] != '\\' || s.p[s.i+1] != 'u' || !utf16IsLow(hex4(s.p[s.i+2:s.i+6])) {
				return fmt.Errorf("contains a lone surrogate escape \\u%04x (not a character: escape the pair, or the character itself)", r)
			}
			s.i += 6
		case utf16IsLow(r):
			return fmt.Errorf("contains a lone surrogate escape \\u%04x (not a character: escape the pair, or the character itself)", r)
		}
	}
	top := s.top()
	if top == nil || !top.expectKey {
		return nil
	}
	top.expectKey = false
	raw := s.p[start:s.i]
	key := string(raw[1 : len(raw)-1])
	if escaped {
		if err := json.Unmarshal(raw, &key); err != nil {
			return fmt.Errorf("has an undecodable key: %w", err)
		}
	}
	if top.keys == nil {
		top.keys = map[string]struct{}{}
	}
	if _, dup := top.keys[key]; dup {
		return fmt.Errorf("has key %q twice in one object (PostgreSQL keeps only the last: send it once)", key)
	}
	top.keys[key] = struct{}{}
	return nil
}

func (s *refScanner) number() error {
	start := s.i
	for s.i < len(s.p) && strings.IndexByte("0123456789+-.eE", s.p[s.i]) >= 0 {
		s.i++
	}
	lit := s.p[start:s.i]
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil || math.IsInf(f, 0) {
		return fmt.Errorf("has number %s, beyond float64's range (send large numbers as strings)", abbreviate(lit))
	}
	if f == 0 && hasNonZeroDigit(lit) {
		return fmt.Errorf("has number %s, too small for float64: it rounds to 0 (send it as a string, or as 0)", abbreviate(lit))
	}
	if !scaleWithin(lit) {
		return fmt.Errorf("has number %s, with an exponent beyond ±%d or more than %d digits after the decimal point (round it, or send it as a string)",
			abbreviate(lit), MaxNumberExponent, MaxNumberScale)
	}
	return nil
}
