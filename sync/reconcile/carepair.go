package reconcile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
)

// repairCA marks the desired calico-kubeconfig's CA as a repair when the
// credential verdict on the token the file holds is untrusted (its CA does
// not verify the server it names) and the CA the agent has does verify that
// server, checked by a handshake: a CA that does not help is never written.
// When it does not help either, the file's status says so and nothing is
// marked (what else differs is judged as ever). Only with a prober: the
// verdict untrusted comes from the plugin's own request.
func (r *Reconciler) repairCA(ctx context.Context, p *plan, obs *cniconf.Observation) {
	if r.Probe == nil || r.Verdicts == nil || p == nil || p.want == nil {
		return
	}
	var kf *cniconf.File
	for _, f := range p.want.Files {
		if f.Kind == cniconf.KindKubeconfig {
			kf = f
		}
	}
	if kf == nil {
		return
	}
	data, err := obs.Data(kf.Name)
	if err != nil {
		return
	}
	disk, err := cniconf.ParseKubeconfig(data)
	if err != nil || disk.Insecure || disk.Token == "" {
		return
	}
	if f := r.Verdicts.Finding(disk.Token); f.Verdict != string(probe.Untrusted) {
		return
	}
	want, err := cniconf.ParseKubeconfig(kf.Content)
	if err != nil || want.Insecure {
		return
	}
	origin := r.caOrigin(p)
	switch {
	case len(want.CAData) == 0:
		return
	case bytes.Equal(want.CAData, disk.CAData):
		p.caNote = fmt.Sprintf("the CA on disk does not verify %s, and it is the CA the agent has (%s): no CA the agent has can repair it", disk.Server, origin)
		return
	}
	if err := r.CAChecks.verifies(ctx, *r.Probe, disk.Server, want.CAData, r.now(), r.Verdicts.Period); err != nil {
		p.caNote = fmt.Sprintf("the CA on disk does not verify %s, and the CA the agent has (%s) does not either (%v): the file's CA is left as it is", disk.Server, origin, err)
		return
	}
	p.want.RepairCA(fmt.Sprintf("the CA on disk does not verify %s; replaced with the CA from %s, which does", disk.Server, origin))
	p.caRepair = true
}

// caOrigin names where the desired kubeconfig's CA came from.
func (r *Reconciler) caOrigin(p *plan) string {
	switch {
	case len(p.token.CA) > 0 && p.token.Secret != "":
		return "the ca.crt of Secret " + p.token.Secret
	case len(p.token.CA) > 0:
		return "the token source's ca.crt"
	case r.CAOrigin != "":
		return r.CAOrigin
	}
	return "the agent's own API CA"
}

// CAChecks remembers the last handshake a candidate CA was checked by, so
// a node whose CA nothing the agent has verifies is not dialled at every
// pass: the answer stands for a check period.
type CAChecks struct {
	mu  sync.Mutex
	key [32]byte
	at  time.Time
	err error
}

func (c *CAChecks) verifies(ctx context.Context, pr probe.Prober, server string, ca []byte, now time.Time, period time.Duration) error {
	if c == nil {
		return pr.Verifies(ctx, server, ca)
	}
	key := sha256.Sum256(append([]byte(server+"\x00"), ca...))
	c.mu.Lock()
	if c.key == key && !c.at.IsZero() && now.Sub(c.at) < period {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.mu.Unlock()
	err := pr.Verifies(ctx, server, ca)
	var untrusted *probe.UntrustedError
	if err != nil && !errors.As(err, &untrusted) {
		// No answer says nothing of the CA: asked again next pass.
		return err
	}
	c.mu.Lock()
	c.key, c.at, c.err = key, now, err
	c.mu.Unlock()
	return err
}

// repairedCA says whether Sync replaced a CA.
func repairedCA(done []cniconf.Outcome) bool {
	for _, o := range done {
		if o.Action == cniconf.ActionCARepaired {
			return true
		}
	}
	return false
}

// noteCA adds to the kubeconfig's status why its CA, which does not verify
// the server, was not replaced.
func (p *plan) noteCA(files []cniconf.FileStatus) []cniconf.FileStatus {
	if p.caNote == "" {
		return files
	}
	for i, f := range p.want.Files {
		if f.Kind == cniconf.KindKubeconfig && i < len(files) {
			files[i].Message = joinMessages(files[i].Message, p.caNote)
		}
	}
	return files
}
