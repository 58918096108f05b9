package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The operator's DaemonSet as the fixture holds it: the node's CNI
// directory, and the API address the operator copied from its own env into
// install-cni's and calico-node's (a kubeadm cluster's service address).
const (
	fixtureCNIDir      = "/etc/cni/net.d"
	fixtureServiceHost = "10.96.0.1"
	fixtureServicePort = "443"
)

// applyInstall applies a Calico install fixture the way a cluster admin
// would (kubectl apply --server-side), with the one change a node of this
// demo needs: its DaemonSets mount cniDir as the CNI directory, and the
// service address written into their env is the control plane's loopback
// one (the demo never dials anything else). It returns what it applied, by
// kind and name.
func applyInstall(ctx context.Context, e *env, fixture, cniDir string) ([]string, error) {
	f, err := os.Open(fixture)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	host, port, err := net.SplitHostPort(e.cp.Host())
	if err != nil {
		return nil, err
	}
	var doc bytes.Buffer
	var applied []string
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", fixture, err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(raw, &u.Object); err != nil {
			return nil, fmt.Errorf("read %s: %w", fixture, err)
		}
		if len(u.Object) == 0 {
			continue // a document of comments only
		}
		if u.GetKind() == "DaemonSet" {
			if err := toLoopbackNode(u, cniDir, host, port); err != nil {
				return nil, fmt.Errorf("DaemonSet %s/%s: %w", u.GetNamespace(), u.GetName(), err)
			}
		}
		if u.GetKind() == "ConfigMap" {
			// The operator writes the address into cni-config's
			// k8s_api_root too, which Calico's plugin (and the agent's
			// credential probe) dials before the kubeconfig's server.
			data, _, _ := unstructured.NestedStringMap(u.Object, "data")
			for k, v := range data {
				data[k] = strings.ReplaceAll(v, "https://"+net.JoinHostPort(fixtureServiceHost, fixtureServicePort), "https://"+e.cp.Host())
			}
			if data != nil {
				if err := unstructured.SetNestedStringMap(u.Object, data, "data"); err != nil {
					return nil, err
				}
			}
		}
		y, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		if strings.Contains(string(y), fixtureServiceHost) && u.GetKind() != "Namespace" {
			return nil, fmt.Errorf("%s %s still names %s, which nothing here may dial", u.GetKind(), u.GetName(), fixtureServiceHost)
		}
		doc.WriteString("---\n")
		doc.Write(y)
		name := u.GetName()
		if u.GetNamespace() != "" {
			name = u.GetNamespace() + "/" + name
		}
		applied = append(applied, u.GetKind()+" "+name)
	}
	path := filepath.Join(e.dir, filepath.Base(fixture))
	if err := os.WriteFile(path, doc.Bytes(), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, e.o.kubectl, "--kubeconfig", e.kubeconfig, "apply", "--server-side", "--force-conflicts",
		"--field-manager", "calico-cni-sync-demo", "-f", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kubectl apply --server-side -f %s: %w\n%s", path, err, out)
	}
	return applied, nil
}

// toLoopbackNode points the DaemonSet's cni-net-dir hostPath at dir and
// replaces the literal KUBERNETES_SERVICE_HOST/PORT of every container with
// the control plane's. install-cni's CNI_NET_DIR (the path written into the
// conf) stays, as on a node where the directory is mounted elsewhere.
func toLoopbackNode(u *unstructured.Unstructured, dir, host, port string) error {
	spec := []string{"spec", "template", "spec"}
	vols, _, err := unstructured.NestedSlice(u.Object, append(spec, "volumes")...)
	if err != nil {
		return err
	}
	moved := 0
	for _, v := range vols {
		vol, _ := v.(map[string]any)
		if path, _, _ := unstructured.NestedString(vol, "hostPath", "path"); vol["name"] == "cni-net-dir" && path == fixtureCNIDir {
			if err := unstructured.SetNestedField(vol, dir, "hostPath", "path"); err != nil {
				return err
			}
			moved++
		}
	}
	if moved != 1 {
		return fmt.Errorf("no hostPath volume cni-net-dir of %s", fixtureCNIDir)
	}
	if err := unstructured.SetNestedSlice(u.Object, vols, append(spec, "volumes")...); err != nil {
		return err
	}
	replaced := 0
	for _, list := range []string{"initContainers", "containers"} {
		ctrs, _, err := unstructured.NestedSlice(u.Object, append(spec, list)...)
		if err != nil {
			return err
		}
		for _, ct := range ctrs {
			ctr, _ := ct.(map[string]any)
			envs, found, _ := unstructured.NestedSlice(ctr, "env")
			if !found {
				continue
			}
			for _, ev := range envs {
				v, _ := ev.(map[string]any)
				switch {
				case v["name"] == "KUBERNETES_SERVICE_HOST" && v["value"] == fixtureServiceHost:
					v["value"] = host
					replaced++
				case v["name"] == "KUBERNETES_SERVICE_PORT" && v["value"] == fixtureServicePort:
					v["value"] = port
					replaced++
				}
			}
			if err := unstructured.SetNestedSlice(ctr, envs, "env"); err != nil {
				return err
			}
		}
		if err := unstructured.SetNestedSlice(u.Object, ctrs, append(spec, list)...); err != nil {
			return err
		}
	}
	if replaced == 0 {
		return fmt.Errorf("no literal KUBERNETES_SERVICE_HOST=%s to replace", fixtureServiceHost)
	}
	// Nothing in the DaemonSet may still name an address off this machine.
	y, err := yaml.Marshal(u.Object)
	if err != nil {
		return err
	}
	if strings.Contains(string(y), fixtureServiceHost) {
		return fmt.Errorf("%s is still in the DaemonSet after the rewrite", fixtureServiceHost)
	}
	return nil
}
