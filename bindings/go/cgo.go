package ingest

// The C side of the package: where the header and the static library are, and the
// conversions of the errors shim.c captures.

/*
#cgo CFLAGS: -I${SRCDIR}/../c/include
#cgo LDFLAGS: ${SRCDIR}/lib/libingest.a -lcurl -lz -lssl -lcrypto -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include "shim.h"
*/
import "C"

import "unsafe"

// takeError turns a captured error into a Go error and frees its strings.
func takeError(status C.ingest_status, e *C.go_ingest_error) error {
	defer freeError(e)
	if e.rejected != 0 {
		return rejection(e)
	}
	return &Error{Status: Status(status), Message: C.GoString(e.message)}
}

// rejection builds the ValidationError a captured rejection describes.
func rejection(e *C.go_ingest_error) *ValidationError {
	v := &ValidationError{
		Index:    int(e.index),
		Code:     int(e.code),
		CodeName: C.GoString(e.code_name),
		Message:  C.GoString(e.rejection_message),
	}
	if e.field != nil {
		v.Field = C.GoString(e.field)
	}
	return v
}

func freeError(e *C.go_ingest_error) {
	for _, s := range []*C.char{e.message, e.code_name, e.field, e.rejection_message} {
		C.free(unsafe.Pointer(s))
	}
	*e = C.go_ingest_error{}
}

// bytesArg is a pointer to b's bytes for a C call that copies them (cgo pins b
// during the call). An empty slice gets a valid pointer: the library checks lengths,
// not emptiness.
func bytesArg(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		var one C.uint8_t
		return &one, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b))), C.size_t(len(b))
}

// setLogLevel registers the log trampoline up to max (INGEST_LOG_OFF: none).
func setLogLevel(max C.uint32_t) error {
	var e C.go_ingest_error
	if status := C.go_ingest_set_log(max, &e); status != C.INGEST_OK {
		return takeError(status, &e)
	}
	return nil
}
