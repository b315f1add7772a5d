package ingest

/*
#include "ingest.h"
*/
import "C"

import (
	"context"
	"log/slog"
	"sync/atomic"
)

var logger atomic.Pointer[slog.Logger]

// SetLogger sends the library's log records (its background threads' and the Kafka
// client's) to l, up to level (slog.LevelDebug - 4 and below: trace detail too). A
// nil l turns them off. Call it before New to see the clients' start-up.
func SetLogger(l *slog.Logger, level slog.Level) error {
	max := C.uint32_t(C.INGEST_LOG_OFF)
	if l != nil {
		switch {
		case level <= slog.LevelDebug-4:
			max = C.INGEST_LOG_TRACE
		case level <= slog.LevelDebug:
			max = C.INGEST_LOG_DEBUG
		case level <= slog.LevelInfo:
			max = C.INGEST_LOG_INFO
		case level <= slog.LevelWarn:
			max = C.INGEST_LOG_WARN
		default:
			max = C.INGEST_LOG_ERROR
		}
	}
	logger.Store(l)
	return setLogLevel(max)
}

//export goIngestLog
func goIngestLog(level C.uint32_t, target, message *C.char) {
	l := logger.Load()
	if l == nil {
		return
	}
	var lvl slog.Level
	switch level {
	case C.INGEST_LOG_ERROR:
		lvl = slog.LevelError
	case C.INGEST_LOG_WARN:
		lvl = slog.LevelWarn
	case C.INGEST_LOG_INFO:
		lvl = slog.LevelInfo
	case C.INGEST_LOG_DEBUG:
		lvl = slog.LevelDebug
	default:
		lvl = slog.LevelDebug - 4
	}
	l.Log(context.Background(), lvl, C.GoString(message), "target", C.GoString(target))
}
