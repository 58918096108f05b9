package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// redactingHandler hides anything shaped like a token in every message and
// string attribute, whoever logs it (client-go included).
type redactingHandler struct{ slog.Handler }

// Handle redacts the record's message and attributes, then passes it on.
func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, cniconf.Redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func redactAttr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		return slog.String(a.Key, cniconf.Redact(a.Value.String()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, cniconf.Redact(err.Error()))
		}
	}
	return a
}

// WithAttrs redacts attributes bound to a logger.
func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	for i := range attrs {
		attrs[i] = redactAttr(attrs[i])
	}
	return redactingHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup keeps redacting inside the group.
func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{h.Handler.WithGroup(name)}
}

// goflagSet holds klog's standard-library flags so -v reaches client-go.
type goflagSet struct{ fs *flag.FlagSet }

func (g *goflagSet) set() *flag.FlagSet {
	g.fs = flag.NewFlagSet("klog", flag.ContinueOnError)
	return g.fs
}
