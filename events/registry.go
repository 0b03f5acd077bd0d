package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
)

// Upcaster turns a stored payload of schema version From into version From+1.
// Upcasters run on raw JSON so an old Go type need not be kept around.
type Upcaster struct {
	From int
	Func func(payload json.RawMessage) (json.RawMessage, error)
}

// Registry maps stable type names to Go types. The name, not the Go type, is
// what is stored, so renaming a Go type is safe as long as it stays registered
// under the same name. To rename a *stored name*, register the Go type under
// the new name and keep reading the old one with Alias (a Go type is
// registered under one name only: a second Register of it fails), or
// migrate the rows: never just change the string.
//
// A Registry is safe for concurrent use.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*typeEntry
	byType map[reflect.Type]*typeEntry
}

type typeEntry struct {
	name    string
	version int
	goType  reflect.Type
	ups     map[int]Upcaster
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byName: map[string]*typeEntry{}, byType: map[reflect.Type]*typeEntry{}}
}

// Register registers T under name at schema version 1. It panics on
// programmer error (empty or reused name, T already registered); use
// RegisterSafely to get the error instead.
func Register[T any](r *Registry, name string) {
	if err := RegisterSafely[T](r, name, 1); err != nil {
		panic(err)
	}
}

// RegisterVersioned registers T under name at the given schema version, with
// upcasters that bring every older stored version up to it. It panics on
// programmer error.
func RegisterVersioned[T any](r *Registry, name string, version int, ups ...Upcaster) {
	if err := RegisterSafely[T](r, name, version, ups...); err != nil {
		panic(err)
	}
}

// RegisterSafely is Register/RegisterVersioned returning the error.
func RegisterSafely[T any](r *Registry, name string, version int, ups ...Upcaster) error {
	goType := reflect.TypeFor[T]()
	if err := ValidateTypeName(name); err != nil {
		return fmt.Errorf("events: register %s: %w", goType, err)
	}
	if goType.Kind() == reflect.Pointer {
		// NameOf takes a pointer to a registered value type already; a
		// pointer registered beside its value would name one type twice
		// and decode as a pointer.
		return fmt.Errorf("events: register %q: %s is a pointer: register the value type %s (a pointer to it is named the same)", name, goType, goType.Elem())
	}
	if version < 1 || version > MaxSchemaVersion {
		// Past MaxSchemaVersion no store can hold the version: refused
		// here, not at every append of the type.
		return fmt.Errorf("events: register %q: schema version %d, want 1 to %d", name, version, MaxSchemaVersion)
	}
	e := &typeEntry{name: name, version: version, goType: goType, ups: map[int]Upcaster{}}
	for _, u := range ups {
		if u.Func == nil || u.From < 1 || u.From >= version {
			return fmt.Errorf("events: register %q: upcaster from v%d must have a Func and 1 <= From < %d", name, u.From, version)
		}
		if _, dup := e.ups[u.From]; dup {
			return fmt.Errorf("events: register %q: two upcasters from v%d", name, u.From)
		}
		e.ups[u.From] = u
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byName[name]; dup {
		return fmt.Errorf("events: type name %q registered twice", name)
	}
	if prev, dup := r.byType[goType]; dup {
		return fmt.Errorf("events: Go type %s already registered as %q", goType, prev.name)
	}
	r.byName[name] = e
	r.byType[goType] = e
	return nil
}

// Alias makes name decode into the Go type already registered as target,
// so an event type can be renamed without orphaning stored events: register
// the new name, alias the old one to it. Events stored under the old name
// then decode to the same Go type, through the same upcasters, and
// CanonicalName maps the old name to the new; new events are stored under
// the new name.
func (r *Registry) Alias(name, target string) error {
	if err := ValidateTypeName(name); err != nil {
		return fmt.Errorf("events: alias %q (for %q): %w", name, target, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.byName[target]
	if !ok {
		return &UnknownTypeError{Name: target}
	}
	if _, dup := r.byName[name]; dup {
		return fmt.Errorf("events: type name %q registered twice", name)
	}
	r.byName[name] = t
	return nil
}

// CanonicalName returns the name the type stored as name is registered
// under now: name itself, or the name an alias points to. ok is false for
// a name the registry does not know. Code that dispatches stored events by
// name must dispatch on it (or on the decoded Go type), or events stored
// under an old name would match no handler.
func (r *Registry) CanonicalName(name string) (canonical string, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byName[name]
	if !ok {
		return "", false
	}
	return e.name, true
}

// NameOf returns the stored name and current schema version of v's type.
func (r *Registry) NameOf(v any) (string, int, error) {
	t := reflect.TypeOf(v)
	r.mu.RLock()
	e, ok := r.byType[t]
	if !ok && t != nil && t.Kind() == reflect.Pointer {
		e, ok = r.byType[t.Elem()]
	}
	r.mu.RUnlock()
	if !ok {
		return "", 0, &UnknownTypeError{GoType: fmt.Sprint(t)}
	}
	return e.name, e.version, nil
}

// Encode turns an event's Data into a Raw. A Raw passes through after its
// payload is checked to be JSON; a nil registry accepts only Raw.
func (r *Registry) Encode(data any) (Raw, error) {
	if raw, ok := data.(Raw); ok {
		if raw.Type == "" {
			return Raw{}, fmt.Errorf("%w: raw event has an empty type name", ErrInvalidEvent)
		}
		if !json.Valid(raw.Payload) {
			return Raw{}, fmt.Errorf("%w: payload of %q is not valid JSON", ErrInvalidEvent, raw.Type)
		}
		if raw.SchemaVersion == 0 {
			raw.SchemaVersion = 1
		}
		return raw, nil
	}
	if r == nil {
		return Raw{}, &UnknownTypeError{GoType: fmt.Sprintf("%T", data)}
	}
	name, version, err := r.NameOf(data)
	if err != nil {
		return Raw{}, err
	}
	if rv := reflect.ValueOf(data); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return Raw{}, fmt.Errorf("%w: nil %T for %q (append a value)", ErrInvalidEvent, data, name)
	}
	b, err := json.Marshal(data)
	if err != nil {
		return Raw{}, fmt.Errorf("%w: encode %q: %w", ErrInvalidEvent, name, err)
	}
	return Raw{Type: name, SchemaVersion: version, Payload: b}, nil
}

// Decode returns the envelope's payload as a value of its registered Go type
// (not a pointer), running upcasters for older schema versions. An
// upcaster or an UnmarshalJSON method that panics on the payload makes it
// a *DecodeError saying so, as one that returns an error does: a reader
// treats a payload it cannot decode as such, rather than losing its
// process or its delivery to the panic.
func (r *Registry) Decode(env Envelope) (any, error) {
	r.mu.RLock()
	e, ok := r.byName[env.Type]
	r.mu.RUnlock()
	if !ok {
		return nil, &UnknownTypeError{Name: env.Type}
	}
	payload := env.Payload
	if env.SchemaVersion < 0 {
		// Stores refuse one on append: only a row written by other means
		// has it, and no upcaster chain starts below 1.
		return nil, &DecodeError{Type: env.Type, SchemaVersion: env.SchemaVersion, Err: errors.New("a negative schema version is not one this build can read (versions start at 1; 0 means 1)")}
	}
	v := max(env.SchemaVersion, 1)
	if v > e.version {
		return nil, &DecodeError{
			Type: env.Type, SchemaVersion: v,
			Err: fmt.Errorf("stored schema is newer than this build's v%d (deploy the newer code first)", e.version),
		}
	}
	for ; v < e.version; v++ {
		u, ok := e.ups[v]
		if !ok {
			return nil, &DecodeError{Type: env.Type, SchemaVersion: v, Err: fmt.Errorf("no upcaster from v%d", v)}
		}
		var err error
		if payload, err = upcast(u, v, payload); err != nil {
			return nil, &DecodeError{Type: env.Type, SchemaVersion: v, Err: err}
		}
	}
	ptr := reflect.New(e.goType)
	if err := unmarshal(payload, ptr.Interface()); err != nil {
		return nil, &DecodeError{Type: env.Type, SchemaVersion: env.SchemaVersion, Err: err}
	}
	return ptr.Elem().Interface(), nil
}

// upcast runs the upcaster from version v, turning its panic into an
// error.
func upcast(u Upcaster, v int, payload json.RawMessage) (out json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{fmt.Sprintf("the upcaster from v%d panicked on the payload: %v (make it return an error for payloads it cannot upcast)", v, p)}
		}
	}()
	return u.Func(payload)
}

// unmarshal is json.Unmarshal, turning a panic of the type's UnmarshalJSON
// into an error.
func unmarshal(payload json.RawMessage, ptr any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{fmt.Sprintf("decoding into %T panicked: %v (make its UnmarshalJSON return an error for payloads it cannot decode)", ptr, p)}
		}
	}()
	return json.Unmarshal(payload, ptr)
}

// panicError is a decoder's panic as an error; it says what to do itself,
// so DecodeError adds no guess of its own.
type panicError struct{ msg string }

func (e *panicError) Error() string { return e.msg }

// DecodeAs decodes env and asserts its type is T.
func DecodeAs[T any](r *Registry, env Envelope) (T, error) {
	var zero T
	v, err := r.Decode(env)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return zero, &DecodeError{Type: env.Type, SchemaVersion: env.SchemaVersion, Err: fmt.Errorf("registered as %T, not %T", v, zero)}
	}
	return t, nil
}
