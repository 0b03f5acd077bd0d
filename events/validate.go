package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/converge-es/converge/internal/ascii"
)

// The bad-input contract. Both stores call Prepare before anything else, so
// every rule here is enforced before any SQL runs, identically in memory and
// on PostgreSQL, and whatever passes is stored and read back unchanged by
// either store. Each rule exists because one of the two stores could not
// keep the input as given.
const (
	// MaxTypeNameLength is the longest event type name, in bytes.
	MaxTypeNameLength = 200
	// MaxSchemaVersion is the highest schema version (PostgreSQL stores it
	// as a 32-bit integer).
	MaxSchemaVersion = math.MaxInt32
	// MaxNumberScale is the most digits a payload number may have after the
	// decimal point once its exponent is applied (0.5e-3 has 4). PostgreSQL
	// stores numbers written out in full, so 1e-16000 would take 16 KB; 400
	// digits hold every float64 that does not round to zero.
	MaxNumberScale = 400
	// MaxNumberExponent bounds the exponent a payload number is written
	// with (PostgreSQL refuses some larger ones even on zero).
	MaxNumberExponent = 9999
)

// ValidateStreamID checks a stream id: 1 to MaxStreamIDLength bytes of valid
// UTF-8 without control characters. Control characters are Unicode's
// category Cc (U+0000–U+001F, U+007F, and the C1 controls U+0080–U+009F,
// U+0085 among them) plus the line and paragraph separators U+2028 and
// U+2029: all of them break lines or terminals where ids are logged or
// shown. Any other character, quotes and semicolons included, is allowed:
// stores pass ids as parameters.
func ValidateStreamID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty stream id", ErrInvalidEvent)
	case len(id) > MaxStreamIDLength:
		return fmt.Errorf("%w: stream id is %d bytes, the limit is %d", ErrInvalidEvent, len(id), MaxStreamIDLength)
	}
	if err := checkText(id); err != nil {
		return fmt.Errorf("%w: stream id %w", ErrInvalidEvent, err)
	}
	return nil
}

// ValidateTypeName checks an event type name by the rules of stream ids
// (see ValidateStreamID), with MaxTypeNameLength as the limit.
func ValidateTypeName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty type name", ErrInvalidEvent)
	case len(name) > MaxTypeNameLength:
		return fmt.Errorf("%w: type name is %d bytes, the limit is %d (type names are stable identifiers, not data)",
			ErrInvalidEvent, len(name), MaxTypeNameLength)
	}
	if err := checkText(name); err != nil {
		return fmt.Errorf("%w: type name %w", ErrInvalidEvent, err)
	}
	return nil
}

// ValidateFromVersion checks the version a stream read starts at. Versions
// start at 1; 0 also means from the start.
func ValidateFromVersion(fromVersion int64) error {
	if fromVersion < 0 {
		return fmt.Errorf("%w: fromVersion %d is negative (stream versions start at 1: pass 1 to read from the start)", ErrInvalidEvent, fromVersion)
	}
	return nil
}

// checkText refuses invalid UTF-8 and control characters.
func checkText(s string) error {
	if ascii.Printable(s) {
		return nil
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("is not valid UTF-8")
	}
	for _, r := range s {
		if IsControl(r) {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

// IsControl reports whether r is a control character by the rule stream
// ids, type names and row addresses (feed.ValidateRowAddress) follow:
// Unicode's category Cc (U+0000–U+001F, U+007F and the C1 controls
// U+0080–U+009F) or the line and paragraph separators U+2028 and U+2029.
func IsControl(r rune) bool {
	if uint32(r) < utf8.RuneSelf {
		// unicode.Is costs a call and a table search per character, and
		// nearly all characters checked are ASCII. (A negative r, no
		// character, goes on to unicode.Is, which refuses none.)
		return r < 0x20 || r == 0x7f
	}
	return unicode.Is(unicode.Cc, r) || r == '\u2028' || r == '\u2029'
}

// ValidatePayload checks that a payload is one JSON document that both
// stores keep as given:
//   - valid JSON in valid UTF-8;
//   - no NUL character, raw or escaped as \u0000 (PostgreSQL's jsonb cannot
//     hold it);
//   - no lone surrogate escape such as \ud800 (it encodes no character);
//   - every number within float64's range, neither overflowing to infinity
//     nor a non-zero that rounds to zero (such numbers decode nowhere the
//     same), with at most MaxNumberScale digits after the decimal point once
//     the exponent is applied (PostgreSQL writes numbers out in full), and
//     an exponent within ±MaxNumberExponent;
//   - no object with the same key twice (PostgreSQL keeps only the last).
//
// Whitespace, key order and the spelling of numbers and escapes are not
// part of an event's content: PostgreSQL normalises them, memory keeps them.
// A zero's sign counts as spelling: PostgreSQL gives -0 back as 0, so a Go
// float64 negative zero decodes as +0 from it (equal, but math.Signbit and
// 1/x tell them apart); keep the sign elsewhere if it matters.
func ValidatePayload(p []byte) error {
	_, err := PayloadReadBackSize(p)
	return err
}

// PayloadReadBackSize checks p as ValidatePayload does and returns the
// most bytes either store can give it back as. Memory keeps p as given;
// PostgreSQL's jsonb writes every number out in full (1e300 as 301
// digits, 1e-300 as 302 characters) and puts a space after each ',' and
// ':'. Strings never grow: jsonb escapes only what JSON requires escaped.
// Limits.MaxPayloadBytes bounds this size, not p's length alone, so a
// payload read back from either store can be appended again as it is, and
// no reader is handed many times the bytes its writer was allowed.
func PayloadReadBackSize(p []byte) (int, error) {
	if !json.Valid(p) {
		return 0, fmt.Errorf("is not valid JSON")
	}
	if !utf8.Valid(p) {
		return 0, fmt.Errorf("is not valid UTF-8")
	}
	s, ok := scanners.Get().(*payloadScanner)
	if !ok {
		s = new(payloadScanner)
	}
	defer s.release()
	s.p = p
	if err := s.scan(); err != nil {
		return 0, err
	}
	return max(len(p), s.written), nil
}

// scanners keeps scanners with their frames and keys grown: every append
// and row write scans a document, and would otherwise allocate them
// anew.
var scanners sync.Pool

// The largest frames and keys a pooled scanner keeps.
const (
	maxPooledFrames = 64
	maxPooledKeys   = 256
)

// release empties s, keeping no reference to its document or keys, and
// returns it to scanners, unless a deep or wide document grew it: the
// pool would keep that memory.
func (s *payloadScanner) release() {
	if cap(s.stack) > maxPooledFrames || cap(s.keys) > maxPooledKeys {
		return
	}
	clear(s.stack[:cap(s.stack)])
	clear(s.keys[:cap(s.keys)])
	*s = payloadScanner{stack: s.stack[:0], keys: s.keys[:0]}
	scanners.Put(s)
}

// payloadScanner walks a document json.Valid accepted, so it checks content
// only, never syntax. It runs on every appended event, so it avoids
// allocating for what typical payloads hold: small objects and integers.
type payloadScanner struct {
	p     []byte
	i     int
	stack []frame
	// keys are the keys of the open objects, each frame's from its
	// keyStart on: an inner object closes before the one around it takes
	// its next key, so they stack as the frames do.
	keys [][]byte
	// written bounds the document's length as PostgreSQL writes it out
	// (see PayloadReadBackSize).
	written int
}

// frame is one open array or object. An object's keys are kept as the bytes
// between their quotes (decoded when they hold escapes), compared one by
// one while there are few and in a map beyond smallObject.
type frame struct {
	object    bool
	expectKey bool
	keyStart  int
	set       map[string]struct{}
}

// smallObject is how many keys an object holds before its duplicate check
// switches from comparing each key to a map.
const smallObject = 16

// add records key as a key of f, the top frame, and reports whether the
// object already had it.
func (s *payloadScanner) add(f *frame, key []byte) (dup bool) {
	if f.set != nil {
		if _, dup := f.set[string(key)]; dup {
			return true
		}
		f.set[string(key)] = struct{}{}
		return false
	}
	own := s.keys[f.keyStart:]
	for _, k := range own {
		if bytes.Equal(k, key) {
			return true
		}
	}
	if len(own) < smallObject {
		s.keys = append(s.keys, key)
		return false
	}
	f.set = make(map[string]struct{}, 2*smallObject)
	for _, k := range own {
		f.set[string(k)] = struct{}{}
	}
	f.set[string(key)] = struct{}{}
	s.keys = s.keys[:f.keyStart]
	return false
}

// push opens an array or object.
func (s *payloadScanner) push(object bool) {
	s.stack = append(s.stack, frame{object: object, expectKey: object, keyStart: len(s.keys)})
}

// pop closes the top array or object, dropping its keys.
func (s *payloadScanner) pop() {
	s.keys = s.keys[:s.stack[len(s.stack)-1].keyStart]
	s.stack = s.stack[:len(s.stack)-1]
}

func (s *payloadScanner) scan() error {
	for s.i < len(s.p) {
		c := s.p[s.i]
		switch {
		case c == '{':
			s.push(true)
			s.i++
			s.written++
		case c == '[':
			s.push(false)
			s.i++
			s.written++
		case c == '}' || c == ']':
			s.pop()
			s.i++
			s.written++
		case c == ',':
			if top := s.top(); top != nil && top.object {
				top.expectKey = true
			}
			s.i++
			s.written += 2 // ", "
		case c == ':':
			s.i++
			s.written += 2 // ": "
		case c == '"':
			start := s.i
			if err := s.str(); err != nil {
				return err
			}
			s.written += s.i - start
		case c == '-' || (c >= '0' && c <= '9'):
			if err := s.number(); err != nil {
				return err
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			s.i++ // jsonb keeps no whitespace of its own
		default: // the letters of true, false and null
			s.i++
			s.written++
		}
	}
	return nil
}

func (s *payloadScanner) top() *frame {
	if len(s.stack) == 0 {
		return nil
	}
	return &s.stack[len(s.stack)-1]
}

// str checks the string starting at s.i and, when it is an object key,
// that the object has not had it before.
func (s *payloadScanner) str() error {
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
	key := raw[1 : len(raw)-1]
	if escaped {
		var decoded string
		if err := json.Unmarshal(raw, &decoded); err != nil {
			return fmt.Errorf("has an undecodable key: %w", err)
		}
		key = []byte(decoded)
	}
	if s.add(top, key) {
		return fmt.Errorf("has key %q twice in one object (PostgreSQL keeps only the last: send it once)", key)
	}
	return nil
}

func (s *payloadScanner) number() error {
	start := s.i
	for s.i < len(s.p) && strings.IndexByte("0123456789+-.eE", s.p[s.i]) >= 0 {
		s.i++
	}
	lit := s.p[start:s.i]
	if plainInteger(lit) {
		s.written += len(lit)
		return nil
	}
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
	s.written += writtenOutLength(lit)
	return nil
}

// writtenOutLength is how long PostgreSQL writes a number literal that
// scaleWithin accepted: without exponent, every digit of its integer part
// (at least one) and, when the literal has digits after the point once its
// exponent applies, the point and those digits (trailing zeros kept: 1.50
// stays 1.50, 1.5e-3 is 0.0015). The sign counts even on zero, which
// PostgreSQL drops: a bound, one byte over at most.
func writtenOutLength(lit []byte) int {
	n := 0
	if lit[0] == '-' {
		n, lit = 1, lit[1:]
	}
	mant, exp := lit, 0
	if i := bytes.IndexAny(lit, "eE"); i >= 0 {
		mant = lit[:i]
		exp, _ = strconv.Atoi(string(lit[i+1:])) // scaleWithin parsed it
	}
	intDigits, frac := len(mant), 0
	if i := bytes.IndexByte(mant, '.'); i >= 0 {
		intDigits, frac = i, len(mant)-i-1
	}
	// The point sits intDigits+exp digits into the mantissa's digits; the
	// zeros leading them (0.005e3) do not reach the integer part.
	// A zero's integer part is one 0, whatever its exponent.
	point, zero := intDigits+exp, true
	for _, c := range mant {
		if c == '.' {
			continue
		}
		if c != '0' {
			zero = false
			break
		}
		point--
	}
	if zero {
		point = 1
	}
	n += max(1, point)
	if scale := frac - exp; scale > 0 {
		n += 1 + scale
	}
	return n
}

// plainInteger reports a literal of at most 15 digits, with an optional
// minus sign and nothing else: exact in a float64, with no fraction and no
// exponent, so it passes every check number makes.
func plainInteger(lit []byte) bool {
	if len(lit) > 0 && lit[0] == '-' {
		lit = lit[1:]
	}
	if len(lit) == 0 || len(lit) > 15 {
		return false
	}
	for _, c := range lit {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// scaleWithin reports whether a number literal has an exponent within
// MaxNumberExponent and at most MaxNumberScale digits after the decimal
// point once the exponent is applied.
func scaleWithin(lit []byte) bool {
	mant, exp := lit, 0
	if i := bytes.IndexAny(lit, "eE"); i >= 0 {
		mant = lit[:i]
		e, err := strconv.Atoi(string(lit[i+1:]))
		if err != nil || e > MaxNumberExponent || e < -MaxNumberExponent {
			return false
		}
		exp = e
	}
	frac := 0
	if i := bytes.IndexByte(mant, '.'); i >= 0 {
		frac = len(mant) - i - 1
	}
	return frac-exp <= MaxNumberScale
}

// hasNonZeroDigit reports whether a number literal's mantissa has a digit
// other than 0.
func hasNonZeroDigit(lit []byte) bool {
	for _, c := range lit {
		if c == 'e' || c == 'E' {
			return false
		}
		if c >= '1' && c <= '9' {
			return true
		}
	}
	return false
}

func abbreviate(lit []byte) string {
	if len(lit) > 40 {
		return string(lit[:20]) + "…" + string(lit[len(lit)-10:])
	}
	return string(lit)
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

func utf16IsHigh(r rune) bool { return r >= 0xd800 && r < 0xdc00 }
func utf16IsLow(r rune) bool  { return r >= 0xdc00 && r < 0xe000 }

// ValidateMetadata checks that every metadata string is valid UTF-8 without
// NUL: PostgreSQL's jsonb cannot hold NUL, and invalid UTF-8 would be stored
// as U+FFFD there while memory kept the bytes.
func ValidateMetadata(m Metadata) error {
	check := func(what, s string) error {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%s is not valid UTF-8", what)
		}
		if i := strings.IndexByte(s, 0); i >= 0 {
			return fmt.Errorf("%s contains a NUL character at byte %d, which PostgreSQL cannot store", what, i)
		}
		return nil
	}
	if err := check("correlation id", m.CorrelationID); err != nil {
		return err
	}
	if err := check("causation id", m.CausationID); err != nil {
		return err
	}
	for k, v := range m.Extra {
		if err := check("extra key", k); err != nil {
			return err
		}
		if err := check(fmt.Sprintf("extra %q", k), v); err != nil {
			return err
		}
	}
	return nil
}

// AppliedMarksKey is the Metadata.Extra key under which append hooks
// record, inside the append's own unit, which consumers they applied the
// event to (a strong projection's name, for one). Those consumers move
// past a marked event without applying it, so a caller that could set the
// key would make them skip its event for good: the key is reserved, and
// CheckReserved refuses it.
const AppliedMarksKey = "converge-applied"

// CheckReserved refuses events whose metadata sets a key reserved for
// converge itself (AppliedMarksKey). Stores call it on what the caller
// gives them, before their append hooks add the key. Its errors wrap
// ErrInvalidEvent.
func CheckReserved(evs []Event) error {
	for i, ev := range evs {
		if _, ok := ev.Metadata.Extra[AppliedMarksKey]; ok {
			return fmt.Errorf("%w: event %d of %d sets metadata key %q, which converge reserves for the consumers its append hooks applied the event to "+
				"(they would skip it); remove the key (copying stored events? delete it from Extra: the copy was applied by nothing yet)",
				ErrInvalidEvent, i+1, len(evs), AppliedMarksKey)
		}
	}
	return nil
}

// quoteStreamID quotes a stream id for an error message, cut to
// MaxStreamIDLength bytes: an id the store refuses for its length can be
// as long as a command's payload, and an error quoting it whole would be
// megabytes long wherever it is logged or stored.
func quoteStreamID(id string) string {
	if len(id) <= MaxStreamIDLength {
		return strconv.Quote(id)
	}
	// %q escapes a rune the cut splits, so the quote stays readable.
	return fmt.Sprintf("%q… (%d bytes)", id[:MaxStreamIDLength], len(id))
}
