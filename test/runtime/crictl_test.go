package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// runtimeInfo is what the CRI API's Status (crictl info) says about the
// network: the NetworkReady condition, the last CNI load's status, and the
// network loaded besides loopback. Source is the loaded config as read; it
// may hold a token and is never printed.
type runtimeInfo struct {
	NetworkReady   bool
	NetworkMessage string
	LastLoad       string // "OK" or the load's error
	Network        string // the loaded network's name, "" when none
	Source         string
}

// info asks the runtime for its status through crictl. containerd 1.6
// answers crictl info (a verbose CRI Status) with status.conditions
// (RuntimeReady, NetworkReady), lastCNILoadStatus ("OK" or the error of
// the last reload; the same again per runtime handler, as
// lastCNILoadStatus.default), cniconfig.Networks (loopback first, then up
// to max_conf_num networks, each with its Config.Name and its Config.Source
// as read), and its own config.
func (c *containerd) info() (runtimeInfo, error) {
	out, err := exec.Command(crictlBinary, "--config", c.crictl, "info").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return runtimeInfo{}, fmt.Errorf("crictl info: %w: %s", err, strings.TrimSpace(string(stderr)))
	}
	var raw struct {
		Status struct {
			Conditions []struct {
				Type    string `json:"type"`
				Status  bool   `json:"status"`
				Message string `json:"message"`
			} `json:"conditions"`
		} `json:"status"`
		LastCNILoadStatus *string `json:"lastCNILoadStatus"`
		CNIConfig         struct {
			Networks []struct {
				Config struct {
					Name   string
					Source string
				}
				IFName string
			}
		} `json:"cniconfig"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return runtimeInfo{}, fmt.Errorf("crictl info: not the JSON expected (%d bytes): %w", len(out), err)
	}
	var ri runtimeInfo
	ready := false
	for _, cond := range raw.Status.Conditions {
		if cond.Type == "NetworkReady" {
			ready, ri.NetworkReady, ri.NetworkMessage = true, cond.Status, cond.Message
		}
	}
	if !ready || raw.LastCNILoadStatus == nil {
		return runtimeInfo{}, fmt.Errorf("crictl info: no NetworkReady condition or lastCNILoadStatus (%d bytes)", len(out))
	}
	ri.LastLoad = *raw.LastCNILoadStatus
	for _, n := range raw.CNIConfig.Networks {
		if n.IFName != "lo" {
			ri.Network, ri.Source = n.Config.Name, n.Config.Source
		}
	}
	return ri, nil
}

// String never shows Source.
func (ri runtimeInfo) String() string {
	return fmt.Sprintf("NetworkReady=%t (%s), last load %q, network %q", ri.NetworkReady, ri.NetworkMessage, ri.LastLoad, ri.Network)
}

// waitInfo waits until the runtime's status passes check.
func (c *containerd) waitInfo(ctx context.Context, what string, check func(runtimeInfo) error) runtimeInfo {
	c.t.Helper()
	var ri runtimeInfo
	eventually(c.t, ctx, 30*time.Second, "runtime: "+what, func() error {
		var err error
		if ri, err = c.info(); err != nil {
			return err
		}
		if err := check(ri); err != nil {
			return fmt.Errorf("%w; runtime says %s", err, ri)
		}
		return nil
	})
	return ri
}

// loads is the check that the runtime is NetworkReady with network, and,
// for a .conflist, that it loaded exactly the bytes of file. (A .conf is
// wrapped into a list by containerd, whose source is then its own.)
func loads(network, file string) func(runtimeInfo) error {
	return func(ri runtimeInfo) error {
		if !ri.NetworkReady || ri.LastLoad != "OK" || ri.Network != network {
			return fmt.Errorf("want NetworkReady with network %q", network)
		}
		if filepath.Ext(file) == ".conflist" {
			disk, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			if ri.Source != string(disk) {
				return fmt.Errorf("the loaded config is not %s as on disk", filepath.Base(file))
			}
		}
		return nil
	}
}

// pollResult is what a status poller saw.
type pollResult struct {
	polls, notReady, failedLoad int
	networks                    map[string]int
	firstBad                    string
	errs                        int
}

func (p pollResult) String() string {
	return fmt.Sprintf("%d polls: %d NetworkReady=false, %d failed last load, networks %v, %d crictl errors", p.polls, p.notReady, p.failedLoad, p.networks, p.errs)
}

// poll asks for the runtime's status back to back (crictl info takes about
// 10 ms) until the returned stop is called.
func (c *containerd) poll() (stop func() pollResult) {
	quit, result := make(chan struct{}), make(chan pollResult, 1)
	go func() {
		r := pollResult{networks: map[string]int{}}
		for {
			select {
			case <-quit:
				result <- r
				return
			default:
			}
			ri, err := c.info()
			if err != nil {
				r.errs++
				continue
			}
			r.polls++
			r.networks[ri.Network]++
			if !ri.NetworkReady {
				r.notReady++
			}
			if ri.LastLoad != "OK" {
				r.failedLoad++
			}
			if (!ri.NetworkReady || ri.LastLoad != "OK") && r.firstBad == "" {
				r.firstBad = ri.String()
			}
		}
	}()
	return func() pollResult {
		close(quit)
		return <-result
	}
}
