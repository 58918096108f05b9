package cniconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/version"
)

// Default file names, chosen by what the rendered body is.
const (
	DefaultConfListName = "10-calico.conflist"
	DefaultConfName     = "10-calico.conf"
)

// ConfExtensions are the extensions libcni-based runtimes (containerd,
// CRI-O) load from the CNI directory, in the order they match.
var ConfExtensions = []string{".conf", ".conflist", ".json"}

// IsList reports whether a rendered body is a network configuration list
// (has a "plugins" key), which runtimes load only from a .conflist file.
func IsList(conf []byte) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(conf, &obj) != nil {
		return false
	}
	_, ok := obj["plugins"]
	return ok
}

// ConfName is the file name for a rendered body: name when given (and
// refused when it contradicts the content), else by content.
func ConfName(name string, conf []byte) (string, error) {
	list := IsList(conf)
	if name == "" {
		if list {
			return DefaultConfListName, nil
		}
		return DefaultConfName, nil
	}
	if name != filepath.Base(name) {
		return "", fmt.Errorf("--cni-conf-name %q must be a file name, not a path", name)
	}
	switch ext := filepath.Ext(name); {
	case ext == ".conflist" && !list:
		return "", fmt.Errorf("--cni-conf-name %q is a .conflist but the template renders a single-plugin config: runtimes would not load it", name)
	case (ext == ".conf" || ext == ".json") && list:
		return "", fmt.Errorf("--cni-conf-name %q is a %s file but the template renders a config list (\"plugins\"): runtimes would not load it; use a .conflist name", name, ext)
	case !slices.Contains(ConfExtensions, ext):
		return "", fmt.Errorf("--cni-conf-name %q must end in .conf, .conflist or .json, or runtimes ignore it", name)
	}
	return name, nil
}

// ValidateConf checks a body the way a runtime would load it from a file
// called name: a list through libcni's list loader with at least one plugin,
// a single config through the plugin loader; name, a supported cniVersion and
// a type for every plugin.
func ValidateConf(name string, conf []byte) error {
	supported := version.All.SupportedVersions()
	checkVersion := func(v string) error {
		if v == "" {
			return errors.New("cniVersion is missing")
		}
		if !slices.Contains(supported, v) {
			return fmt.Errorf("cniVersion %q is not supported (libcni knows %v)", v, supported)
		}
		return nil
	}
	if filepath.Ext(name) == ".conflist" {
		list, err := libcni.NetworkConfFromBytes(conf)
		if err != nil {
			return fmt.Errorf("invalid CNI config list: %w", err)
		}
		if list.Name == "" {
			return errors.New("invalid CNI config list: name is empty")
		}
		if err := checkVersion(list.CNIVersion); err != nil {
			return fmt.Errorf("invalid CNI config list: %w", err)
		}
		if len(list.Plugins) == 0 {
			return errors.New("invalid CNI config list: no plugins")
		}
		for i, p := range list.Plugins {
			if p.Network.Type == "" {
				return fmt.Errorf("invalid CNI config list: plugins.%d has no type", i)
			}
		}
		return nil
	}
	c, err := libcni.NetworkPluginConfFromBytes(conf)
	if err != nil {
		return fmt.Errorf("invalid CNI config: %w", err)
	}
	if c.Network.Name == "" {
		return errors.New("invalid CNI config: name is empty")
	}
	if err := checkVersion(c.Network.CNIVersion); err != nil {
		return fmt.Errorf("invalid CNI config: %w", err)
	}
	if c.Network.Type == "" {
		return errors.New("invalid CNI config: no type")
	}
	return nil
}
