package token

import (
	"context"
	"time"
)

// Token policies (--token-policy).
const (
	PolicyAuto  = "auto"
	PolicyOwn   = "own"
	PolicyGuard = "guard"
)

// PolicyFor is the policy a pass works under: the one asked for, or, for
// auto, guard when calico-node refreshes the token itself (manageCNI) and
// the template does not embed it (inConf), else own.
func PolicyFor(asked string, manageCNI, inConf bool) string {
	if asked != "" && asked != PolicyAuto {
		return asked
	}
	if manageCNI && !inConf {
		return PolicyGuard
	}
	return PolicyOwn
}

// Need is what a token is asked for.
type Need struct {
	// Account is the CNI service account.
	Account Account
	// InConf: the template embeds the token in the conf, as Calico v2.x and
	// v3.0 did, whose install-cni took it from the legacy token Secret.
	InConf bool
}

// Source gives the current token.
type Source interface {
	Token(ctx context.Context, need Need) (Token, error)
}

// SourceFunc adapts a function.
type SourceFunc func(ctx context.Context, need Need) (Token, error)

// Token calls f.
func (f SourceFunc) Token(ctx context.Context, need Need) (Token, error) {
	return f(ctx, need)
}

// Invalidator is a token source that can be told its token is dead.
type Invalidator interface{ Invalidate() }

// Renewer is a token source that renews its token on a schedule.
type Renewer interface {
	NextRenewal() time.Time
	Invalidate()
}

// Auto is --token-source=auto: the legacy token Secret when the template
// puts the token in the conf (Calico v2.x/v3.0), else a bound token from the
// TokenRequest API. No Secret is read to decide.
type Auto struct {
	Secret, Request Source
}

// Invalidate tells the TokenRequest source its token is dead.
func (a Auto) Invalidate() {
	if inv, ok := a.Request.(Invalidator); ok {
		inv.Invalidate()
	}
}

// Token asks the source the need calls for.
func (a Auto) Token(ctx context.Context, need Need) (Token, error) {
	if need.InConf {
		return a.Secret.Token(ctx, need)
	}
	return a.Request.Token(ctx, need)
}

// SourceFor names the source a need is asked of under --token-source
// asked: for auto, secret when the token goes in the conf, else
// tokenrequest. Under policy guard a pass that writes no token does not
// ask the source, and reports where a repair would come from by this name.
func SourceFor(asked string, need Need) string {
	if asked != SourceAuto {
		return asked
	}
	if need.InConf {
		return SourceSecret
	}
	return SourceTokenRequest
}

// RenewerOf is the source, or the part of an Auto source, that renews on a
// schedule; nil when there is none.
func RenewerOf(src Source) Renewer {
	if auto, ok := src.(Auto); ok {
		src = auto.Request
	}
	r, _ := src.(Renewer)
	return r
}
