// Command floor is the least any agent must do to bring a ConfigMap change
// to a node's disk under the product contract, for the benchmarks to
// measure the agent against: a client-go watch of the one ConfigMap by name,
// and on each change the two durable writes the contract requires before the
// file is in place: the record of the intended write, then the file, each a
// temporary file written, fsynced, renamed over the target, its directory
// fsynced. It renders by replacing __CNI_MTU__ in the template and nothing
// else (--mtu-key ""; a template with a literal MTU is written as it is).
// It runs as a child process of the benchmark, as the agent does, so the two
// are measured in the same process layout. For each change it prints one
// line to stdout, "event-to-rename <nanoseconds>": from the watch event's
// arrival to the file's rename into place, its own share of the latency.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() { os.Exit(run()) }

func run() int {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	namespace := flag.String("namespace", "", "namespace of the ConfigMap")
	name := flag.String("configmap", "calico-config", "the ConfigMap")
	key := flag.String("key", "cni_network_config", "the ConfigMap's key holding the template")
	mtuKey := flag.String("mtu-key", "veth_mtu", `the key whose value replaces __CNI_MTU__ ("" for none)`)
	out := flag.String("out", "", "the file to write")
	record := flag.String("record", "", "the record of the intended write")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := watchAndWrite(ctx, *kubeconfig, *namespace, *name, render{*key, *mtuKey}, *out, *record); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	return 0
}

// render is which keys of the ConfigMap make the file.
type render struct{ key, mtuKey string }

func (r render) content(cm *corev1.ConfigMap) string {
	if r.mtuKey == "" {
		return cm.Data[r.key]
	}
	return strings.ReplaceAll(cm.Data[r.key], "__CNI_MTU__", cm.Data[r.mtuKey])
}

func watchAndWrite(ctx context.Context, kubeconfig, namespace, name string, r render, out, record string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	cms := client.CoreV1().ConfigMaps(namespace)
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if _, err := apply(r.content(cm), out, record); err != nil {
		return err
	}
	rv := cm.ResourceVersion
	for ctx.Err() == nil {
		w, err := cms.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: rv, AllowWatchBookmarks: true,
		})
		if err != nil {
			return err
		}
		for ev := range w.ResultChan() {
			arrived := time.Now()
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok {
				continue
			}
			rv = cm.ResourceVersion
			if ev.Type != watch.Modified && ev.Type != watch.Added {
				continue
			}
			renamed, err := apply(r.content(cm), out, record)
			if err != nil {
				w.Stop()
				return err
			}
			fmt.Printf("event-to-rename %d\n", renamed.Sub(arrived).Nanoseconds())
		}
	}
	return nil
}

// apply writes the record of the intended write, then the file; it returns
// when the file was renamed into place.
func apply(content, out, record string) (time.Time, error) {
	rec, err := json.Marshal(map[string]any{"file": filepath.Base(out), "pending": map[string]string{"content": content}})
	if err != nil {
		return time.Time{}, err
	}
	if _, err := writeDurably(record, rec); err != nil {
		return time.Time{}, err
	}
	return writeDurably(out, []byte(content))
}

// writeDurably is the contract's atomic write with raw calls: a temporary
// file in the target's directory, written, mode set, fsynced, renamed over
// the target, the directory fsynced. It returns when the rename happened.
func writeDurably(path string, data []byte) (renamed time.Time, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path))
	if err != nil {
		return time.Time{}, err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	_, werr := f.Write(data)
	err = errors.Join(werr, f.Chmod(0o600), f.Sync(), f.Close())
	if err != nil {
		return time.Time{}, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return time.Time{}, err
	}
	renamed = time.Now()
	d, err := os.Open(dir)
	if err != nil {
		return renamed, err
	}
	return renamed, errors.Join(d.Sync(), d.Close())
}
