package ingest

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// Flags is a checked set of feature flags, assigning users to variants as the edge
// agent does (docs/edge-agent.md, "Feature flags"): the same flags file gives every
// user the same variants here, on every agent and in every binding. Safe for
// concurrent use. Close releases it; one that becomes unreachable unclosed is
// released in the background.
type Flags struct {
	*flagSet
}

// flagSet is the state the cleanup releases; Flags wraps it so that an unreachable
// Flags can be noticed.
type flagSet struct {
	mu  sync.RWMutex // read: any call on ptr; write: releasing it
	ptr *C.ingest_flags
}

// NewFlagsFromTOML reads the text of a TOML flags file ([[flags]] tables). Flags that
// break a rule are an *Error with StatusConfig (errors.Is(err, ErrConfig)) whose
// message names where: "flags[0].variants: the percentages add up to 90, not 100".
func NewFlagsFromTOML(text string) (*Flags, error) {
	return newFlags([]byte(text), C.INGEST_CONFIG_TOML)
}

// NewFlagsFromJSON reads the text of a JSON flags file ({"flags": [...]}); errors as
// NewFlagsFromTOML's.
func NewFlagsFromJSON(text []byte) (*Flags, error) {
	return newFlags(text, C.INGEST_CONFIG_JSON)
}

// NewFlagsFromFile reads the flags file at path: JSON when its name ends in ".json",
// else TOML, as the edge agent reads flags.file. Errors name the file in front: a file
// that cannot be read wraps the os error (errors.Is(err, fs.ErrNotExist) works), flags
// that break a rule are NewFlagsFromTOML's *Error.
func NewFlagsFromFile(path string) (*Flags, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: flags file: cannot be read: %w", path, err)
	}
	format := C.uint32_t(C.INGEST_CONFIG_TOML)
	if strings.HasSuffix(path, ".json") {
		format = C.INGEST_CONFIG_JSON
	}
	flags, err := newFlags(text, format)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return flags, nil
}

func newFlags(text []byte, format C.uint32_t) (*Flags, error) {
	var e C.go_ingest_error
	var ptr *C.ingest_flags
	bytes, n := bytesArg(text)
	if status := C.go_ingest_flags_new((*C.char)(unsafe.Pointer(bytes)), n, format, &ptr, &e); status != C.INGEST_OK {
		return nil, takeError(status, &e)
	}
	inner := &flagSet{ptr: ptr}
	f := &Flags{inner}
	runtime.AddCleanup(f, func(inner *flagSet) { inner.close() }, inner)
	return f, nil
}

// borrow takes the read lock for a call on the library's flags, or fails when closed.
// Release with f.mu.RUnlock.
func (f *flagSet) borrow() error {
	f.mu.RLock()
	if f.ptr == nil {
		f.mu.RUnlock()
		return &Error{Status: StatusShuttingDown, Message: "the flags are closed"}
	}
	return nil
}

func (f *flagSet) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ptr != nil {
		C.ingest_flags_free(f.ptr)
		f.ptr = nil
	}
}

// Close releases the flags; later calls fail with ErrClosed. Closing twice is harmless.
func (f *Flags) Close() error {
	f.close()
	return nil
}

// Len is how many flags the set holds (0 once closed).
func (f *Flags) Len() int {
	if f.borrow() != nil {
		return 0
	}
	defer f.mu.RUnlock()
	return int(C.ingest_flags_len(f.ptr))
}

// Assign gives the user's variant of every flag, by flag name. user is a user id, or
// an anonymous id for a visitor; it must be UTF-8 (else ErrInvalidArgument).
func (f *Flags) Assign(user string) (map[string]string, error) {
	if err := f.borrow(); err != nil {
		return nil, err
	}
	defer f.mu.RUnlock()
	var e C.go_ingest_error
	var out *C.char
	userPtr, userLen := textArg(user)
	if status := C.go_ingest_flags_assign(f.ptr, userPtr, userLen, &out, &e); status != C.INGEST_OK {
		return nil, takeError(status, &e)
	}
	defer C.ingest_string_free(out)
	assigned := map[string]string{}
	if err := json.Unmarshal([]byte(C.GoString(out)), &assigned); err != nil {
		return nil, &Error{Status: StatusUnknown, Message: "the library's assignment is not a JSON object of strings: " + err.Error()}
	}
	return assigned, nil
}

// Variant gives the user's variant of one flag; ok is false when the set has no such
// flag. flag and user must be UTF-8 (else ErrInvalidArgument).
func (f *Flags) Variant(flag, user string) (variant string, ok bool, err error) {
	if err := f.borrow(); err != nil {
		return "", false, err
	}
	defer f.mu.RUnlock()
	var e C.go_ingest_error
	var out *C.char
	flagPtr, flagLen := textArg(flag)
	userPtr, userLen := textArg(user)
	if status := C.go_ingest_flags_variant(f.ptr, flagPtr, flagLen, userPtr, userLen, &out, &e); status != C.INGEST_OK {
		return "", false, takeError(status, &e)
	}
	if out == nil {
		return "", false, nil
	}
	defer C.ingest_string_free(out)
	return C.GoString(out), true, nil
}

// textArg is a pointer to s's bytes for a C call that reads them during the call
// (cgo pins the string's memory meanwhile).
func textArg(s string) (*C.char, C.size_t) {
	if len(s) == 0 {
		var nul C.char
		return &nul, 0
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}
