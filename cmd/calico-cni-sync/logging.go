package main

import (
	"context"
	"flag"
	"fmt"
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

// redactAttr redacts an attribute's value, whatever its kind: a LogValuer
// is resolved first, a group is redacted member by member, and anything
// else that is not a plain number, bool, time or duration is logged as its
// redacted text (an error, a Stringer, a struct given to slog.Any).
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, cniconf.Redact(v.String()))
	case slog.KindGroup:
		members := v.Group()
		out := make([]any, len(members))
		for i, m := range members {
			out[i] = redactAttr(m)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, cniconf.Redact(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, cniconf.Redact(x.String()))
		default:
			return slog.String(a.Key, cniconf.Redact(fmt.Sprintf("%+v", x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
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
