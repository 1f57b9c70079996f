// Package pionlog adapts Pion's logging.LoggerFactory to log/slog, so that the
// ICE and DTLS libraries log through the application's structured logger with
// a component=<scope> attribute instead of to stderr.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// LevelTrace is the slog level Pion's Trace messages are logged at (below Debug).
const LevelTrace = slog.LevelDebug - 4

// Factory is a logging.LoggerFactory that creates slog-backed loggers.
type Factory struct {
	log *slog.Logger
}

// NewLoggerFactory returns a Pion LoggerFactory whose loggers write to log,
// each with a component=<scope> attribute. A nil log means slog.Default().
func NewLoggerFactory(log *slog.Logger) logging.LoggerFactory {
	if log == nil {
		log = slog.Default()
	}

	return &Factory{log: log}
}

// NewLogger implements logging.LoggerFactory.
func (f *Factory) NewLogger(scope string) logging.LeveledLogger {
	return &Logger{log: f.log, scope: scope}
}

// Logger is a logging.LeveledLogger over a *slog.Logger. Formatting is skipped
// when the level is disabled. The component attribute is added per record
// rather than with slog's With, which would pre-format a handler for every
// logger pion creates (several per session, almost never used).
type Logger struct {
	log   *slog.Logger
	scope string
}

func (l *Logger) emit(level slog.Level, msg string) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, msg, "component", l.scope)
}

func (l *Logger) emitf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, args...), "component", l.scope)
}

// Trace logs at LevelTrace.
func (l *Logger) Trace(msg string) { l.emit(LevelTrace, msg) }

// Tracef logs at LevelTrace.
func (l *Logger) Tracef(format string, args ...any) { l.emitf(LevelTrace, format, args...) }

// Debug logs at slog.LevelDebug.
func (l *Logger) Debug(msg string) { l.emit(slog.LevelDebug, msg) }

// Debugf logs at slog.LevelDebug.
func (l *Logger) Debugf(format string, args ...any) { l.emitf(slog.LevelDebug, format, args...) }

// Info logs at slog.LevelInfo.
func (l *Logger) Info(msg string) { l.emit(slog.LevelInfo, msg) }

// Infof logs at slog.LevelInfo.
func (l *Logger) Infof(format string, args ...any) { l.emitf(slog.LevelInfo, format, args...) }

// Warn logs at slog.LevelWarn.
func (l *Logger) Warn(msg string) { l.emit(slog.LevelWarn, msg) }

// Warnf logs at slog.LevelWarn.
func (l *Logger) Warnf(format string, args ...any) { l.emitf(slog.LevelWarn, format, args...) }

// Error logs at slog.LevelError.
func (l *Logger) Error(msg string) { l.emit(slog.LevelError, msg) }

// Errorf logs at slog.LevelError.
func (l *Logger) Errorf(format string, args ...any) { l.emitf(slog.LevelError, format, args...) }
