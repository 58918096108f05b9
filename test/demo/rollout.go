package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

var confMTU = regexp.MustCompile(`"mtu":\s*\d+`)

// rolloutStep shows the default rollout of a ConfigMap change, waves: the
// operator changes the MTU in cni-config, and the node, not a canary,
// keeps its file and waits for its wave; then the change is annotated
// immediate, as an urgent one is, and the file follows at once.
func rolloutStep(ctx context.Context, e *env, agent *agent, conf string) error {
	c := e.c
	step("The operator changes the MTU in %s/cni-config: the agent rolls it out in waves (the default)", calicoNS)
	cm, err := c.CoreV1().ConfigMaps(calicoNS).Get(ctx, "cni-config", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if !confMTU.MatchString(cm.Data["config"]) {
		return fmt.Errorf("cni-config's config has no literal mtu")
	}
	cm.Data["config"] = confMTU.ReplaceAllString(cm.Data["config"], `"mtu":1400`)
	if _, err := c.CoreV1().ConfigMaps(calicoNS).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return err
	}
	has1400 := func() bool {
		b, err := os.ReadFile(conf)
		return err == nil && regexp.MustCompile(`"mtu":\s*1400\b`).Match(b)
	}
	fmt.Println(`   cni-config's "mtu" 0 -> 1400, as the operator writes it when the Installation's MTU changes`)
	if err := waitFor(ctx, "the node waits for its wave, or applies the change as a canary", func() bool {
		return has1400() || conditionReason(ctx, e, operatorNode) == "RolloutWaiting"
	}); err != nil {
		return err
	}
	if has1400() {
		// The node's name put it among the 2 % of canaries: wave 0
		// applies at once.
		fmt.Printf("   %s is a canary (2 %% of the nodes, by a hash of their names): it applied the change at once, no annotation needed\n", operatorNode)
		return waitCondition(ctx, c, operatorNode, "InSync")
	}
	if err := waitCondition(ctx, c, operatorNode, "RolloutWaiting"); err != nil {
		return err
	}
	fmt.Printf("   %s keeps its file (mtu 0, the previous config, which works) until its wave opens: the canaries first,\n", operatorNode)
	fmt.Println("   then 4 waves 10 minutes apart; a node that applied it watches its pods' sandboxes for 10 minutes and puts its")
	fmt.Println("   files back at the first failure, which halts the later waves")
	fmt.Println("   calico-cni-sync report --rollout (exit 1: a node waits):")
	out, _ := exec.CommandContext(ctx, e.o.binary, "report", "--rollout", "--kubeconfig", e.kubeconfig).CombinedOutput()
	fmt.Print(indent(cniconf.Redact(string(out))))

	step("An urgent change: annotate cni-config %s=immediate, and every node applies it now", rollout.Annotation)
	fmt.Printf("   kubectl -n %s annotate configmap cni-config %s=immediate --overwrite\n", calicoNS, rollout.Annotation)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"immediate"}}}`, rollout.Annotation)
	annotated := time.Now()
	if _, err := c.CoreV1().ConfigMaps(calicoNS).Patch(ctx, "cni-config", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return err
	}
	if err := waitFor(ctx, "the change in 10-calico.conflist", has1400); err != nil {
		return err
	}
	fmt.Printf("   10-calico.conflist has mtu 1400, %s after the annotation\n", time.Since(annotated).Round(time.Millisecond))
	return waitCondition(ctx, c, operatorNode, "InSync")
}

// conditionReason is the reason of the node's CalicoCNIConfigDrift
// condition, "" when it has none yet.
func conditionReason(ctx context.Context, e *env, node string) string {
	n, err := e.c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == "CalicoCNIConfigDrift" {
			return cond.Reason
		}
	}
	return ""
}
