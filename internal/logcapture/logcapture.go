// Package logcapture is a slog.Handler for tests that keeps every record,
// so that a test can assert which events were logged with which
// attributes.
package logcapture

import (
	"context"
	"log/slog"
	"sync"
)

// Record is one captured event: its level, message and attributes by key.
type Record struct {
	Level slog.Level
	Msg   string
	Attrs map[string]slog.Value
}

// Handler keeps every record at or above Level (the zero Level is
// slog.LevelInfo: set slog.LevelDebug for rudp's events). It is safe for
// concurrent use.
type Handler struct {
	Level slog.Level

	mu      sync.Mutex
	records []Record
}

// Enabled reports whether l is at or above h.Level.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.Level }

// Handle keeps r.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Msg: r.Message, Attrs: map[string]slog.Value{}}
	r.Attrs(func(a slog.Attr) bool { rec.Attrs[a.Key] = a.Value; return true })
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	return nil
}

// WithAttrs returns h: rudp logs no logger-wide attributes.
func (h *Handler) WithAttrs([]slog.Attr) slog.Handler { return h }

// WithGroup returns h.
func (h *Handler) WithGroup(string) slog.Handler { return h }

// Records returns a copy of the records kept so far.
func (h *Handler) Records() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Record(nil), h.records...)
}

// Find returns the records whose message is msg.
func (h *Handler) Find(msg string) []Record {
	var out []Record
	for _, r := range h.Records() {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}
