package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

func TestLogsNeverShowAToken(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		logger := newLogger(&buf, &Options{LogFormat: format})
		logger.Info("token is "+tokenA, "token", tokenB, "err", errors.New("bad token "+tokenA))
		logger.With("bound", tokenB).WithGroup("g").Warn("x", "inner", tokenA)
		klog.InfoS("client-go says", "bearer", tokenB) // client-go's logging goes the same way
		logger.Info("nested", slog.Group("req", "auth", "Bearer "+tokenA), "obj", struct{ Token string }{tokenB},
			"valuer", tokenValuer{tokenA}, "stringer", tokenStringer{tokenB})
		klog.Flush()
		out := buf.String()
		if strings.Contains(out, "c2lnbmF0dXJl") {
			t.Fatalf("%s log shows a token:\n%s", format, out)
		}
		if strings.Count(out, "<token sha256:") < 10 || !strings.Contains(out, "client-go says") {
			t.Fatalf("%s log lost what it should keep:\n%s", format, out)
		}
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
}

// tokenValuer and tokenStringer carry a token through slog's LogValuer and
// fmt's Stringer.
type tokenValuer struct{ tok string }

func (v tokenValuer) LogValue() slog.Value { return slog.StringValue("valued " + v.tok) }

type tokenStringer struct{ tok string }

func (s tokenStringer) String() string { return "stringed " + s.tok }
