package suggest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// installationField is one Installation field the tigera operator renders
// into cni-config, as its render code (pkg/render/node.go,
// createCalicoPluginConfig and nodeCNIConfigMap) does.
type installationField struct {
	// Field is the dotted path in the Installation; Value turns the value
	// edited into the file into the field's value (ok false when the field
	// cannot hold it).
	Field string
	Value func(v any) (any, bool)
}

// calicoFields are the calico plugin's keys and their Installation fields.
var calicoFields = map[string]installationField{
	"mtu":                                    {"spec.calicoNetwork.mtu", integer},
	"log_level":                              {"spec.logging.cni.logSeverity", severity},
	"log_file_max_size":                      {"spec.logging.cni.logFileMaxSize", mebibytes},
	"log_file_max_count":                     {"spec.logging.cni.logFileMaxCount", integer},
	"log_file_max_age":                       {"spec.logging.cni.logFileMaxAgeDays", integer},
	"policy_setup_timeout_seconds":           {"spec.calicoNetwork.linuxPolicySetupTimeoutSeconds", integer},
	"container_settings.allow_ip_forwarding": {"spec.calicoNetwork.containerIPForwarding", enabled},
	"device_type":                            {"spec.calicoNetwork.linuxPodInterfaceType", netkit},
}

// The operator adds the portmap plugin when host ports are enabled.
var hostPorts = installationField{"spec.calicoNetwork.hostPorts", nil}

// specVersion is where the operator takes cni-config's cniVersion from
// (CNISpec.ResolvedSpecVersion, tigera/operator#5090, July 2026): Auto or
// unset is 1.0.0; an operator from before it has no such field and writes
// 0.3.1.
var specVersion = installationField{"spec.cni.specVersion", cniSpecVersion}

// noField is why an operator install cannot keep an edit.
const noField = "the tigera operator has no Installation field for this value: it renders cni-config from the Installation and puts it back when changed, so an edit of this file or of cni-config is lost at the next calico-node restart"

// forOperator maps each edit to the Installation field the operator renders
// it from; or, when cni-config is marked for the operator to leave alone,
// to cni-config itself.
func forOperator(tr *cniconf.Trace, req Request, res *Result) []cniconf.Suggestion {
	var disk, desired any
	_ = json.Unmarshal(req.Disk, &disk)
	_ = json.Unmarshal(req.Desired, &desired)
	origin, set := req.Origins[TemplateVar]
	ignored := set && origin.Kind == installcni.OriginConfigMapKey && origin.OperatorIgnored
	var out []cniconf.Suggestion
	for _, e := range tr.Edits {
		s := operatorEdit(e, disk, desired)
		if ignored {
			s = ignoredEdit(e, s, origin, req, tr.Template, res)
		}
		out = append(out, s)
	}
	return out
}

// ignoredEdit is the suggestion for an edit when cni-config carries the
// operator's ignore annotation: the operator no longer writes cni-config
// from the Installation, so an Installation field does not reach the file
// while the annotation stays, and the template in cni-config is where a
// literal edit lasts. op is what the Installation would need.
func ignoredEdit(e cniconf.TracedEdit, op cniconf.Suggestion, origin installcni.Origin, req Request, template string, res *Result) cniconf.Suggestion {
	why := fmt.Sprintf("%s carries %s: \"true\": the tigera operator no longer updates it, so it no longer follows the Installation", origin.ConfigMap, installcni.OperatorIgnoreAnnotation)
	after := "when the annotation is removed, the operator renders cni-config from the Installation again and this edit is lost"
	if op.Kind == KindInstallation {
		after += fmt.Sprintf(" unless %s is %s", op.Key, op.Value)
	}
	if e.Placeholder != "" {
		op.Reason = why + "; " + op.Reason
		return op
	}
	res.Template = template
	return cniconf.Suggestion{Path: e.Path, Kind: KindTemplate, Target: objectRef(origin.ConfigMap, "configmap"), Key: origin.Key,
		Value: diskValue(req.Disk, e), Command: patchConfigMap(origin.ConfigMap, origin.Key, template),
		Reason: why + ": the template in it holds this value literally, and the command installs it with every edit of this file merged in; " + after}
}

func operatorEdit(e cniconf.TracedEdit, disk, desired any) cniconf.Suggestion {
	if e.Path == "cniVersion" {
		return specVersionEdit(e, disk)
	}
	parts := strings.Split(e.Path, ".")
	if len(parts) < 2 || parts[0] != "plugins" {
		return none(e.Path, noField)
	}
	plugin := pluginAt(disk, parts[1])
	if e.Removed || plugin == "" {
		plugin = pluginAt(desired, parts[1])
	}
	if len(parts) == 2 || (len(parts) == 3 && parts[2] == "type") {
		// A whole plugin added or removed.
		if plugin != "portmap" && pluginAt(disk, parts[1]) != "portmap" {
			return none(e.Path, noField)
		}
		on := hasPlugin(disk, "portmap")
		value := map[bool]string{true: "Enabled", false: "Disabled"}[on]
		return installation(e.Path, hostPorts.Field, value, "the operator adds the portmap plugin when spec.calicoNetwork.hostPorts is Enabled")
	}
	if plugin != "calico" || e.Removed {
		return none(e.Path, noField)
	}
	f, ok := calicoFields[strings.Join(parts[2:], ".")]
	if !ok {
		return none(e.Path, noField)
	}
	v, _ := at(disk, e.Path)
	value, ok := f.Value(v)
	if !ok {
		return none(e.Path, fmt.Sprintf("%s cannot hold the value %v: the operator renders this key from it, with another value", f.Field, v))
	}
	return installation(e.Path, f.Field, value, "the operator renders this key of cni-config from "+f.Field)
}

// specVersionEdit is the suggestion for an edit of the conf's cniVersion.
func specVersionEdit(e cniconf.TracedEdit, disk any) cniconf.Suggestion {
	if e.Removed {
		return none(e.Path, "the operator always writes a cniVersion, from "+specVersion.Field+": no Installation field removes it")
	}
	v, _ := at(disk, e.Path)
	value, ok := specVersion.Value(v)
	if !ok {
		return none(e.Path, fmt.Sprintf("%s (Auto, 0.3.1, 0.4.0 or 1.0.0) cannot hold the value %v: the operator renders cniVersion from it, with another value", specVersion.Field, v))
	}
	return installation(e.Path, specVersion.Field, value, "the operator renders cniVersion of cni-config from "+specVersion.Field+
		" (an operator from before July 2026 has no such field: there the patch does not take)")
}

// installation is the suggestion to set one Installation field.
func installation(path, field string, value any, reason string) cniconf.Suggestion {
	patch := value
	keys := strings.Split(field, ".")
	for i := len(keys) - 1; i >= 0; i-- {
		patch = map[string]any{keys[i]: patch}
	}
	body, _ := json.Marshal(patch)
	shown := fmt.Sprint(value)
	return cniconf.Suggestion{Path: path, Kind: KindInstallation, Target: "installation/default", Key: field, Value: shown,
		Command: "kubectl patch installation default --type merge -p " + shellQuote(string(body)),
		Reason:  reason + " (the operator rewrites cni-config and the DaemonSet from the Installation)"}
}

// cniSpecVersion: the values the Installation CRD's enum allows, but Auto
// (which is no version a file can hold).
func cniSpecVersion(v any) (any, bool) {
	switch v {
	case "0.3.1", "0.4.0", "1.0.0":
		return v, true
	}
	return nil, false
}

func integer(v any) (any, bool) {
	f, ok := v.(float64)
	if !ok || f != float64(int64(f)) {
		return nil, false
	}
	return int64(f), true
}

// severity is the operator's LogSeverity for a CNI log level, which the
// plugin reads regardless of case.
func severity(v any) (any, bool) {
	s, ok := v.(string)
	if !ok {
		return nil, false
	}
	for _, level := range []string{"Error", "Warning", "Info", "Debug"} {
		if strings.EqualFold(s, level) {
			return level, true
		}
	}
	return nil, false
}

// mebibytes: the operator writes logFileMaxSize in MiB.
func mebibytes(v any) (any, bool) {
	n, ok := integer(v)
	if !ok {
		return nil, false
	}
	return strconv.FormatInt(n.(int64), 10) + "Mi", true
}

func enabled(v any) (any, bool) {
	b, ok := v.(bool)
	if !ok {
		return nil, false
	}
	return map[bool]string{true: "Enabled", false: "Disabled"}[b], true
}

// netkit: the operator writes device_type only for Netkit.
func netkit(v any) (any, bool) {
	if v == "netkit" {
		return "Netkit", true
	}
	return nil, false
}

func pluginAt(doc any, index string) string {
	v, ok := at(doc, "plugins."+index+".type")
	if !ok {
		return ""
	}
	s, _ := v.(string)
	return s
}

func hasPlugin(doc any, typ string) bool {
	m, _ := doc.(map[string]any)
	list, _ := m["plugins"].([]any)
	for _, p := range list {
		if pm, ok := p.(map[string]any); ok && pm["type"] == typ {
			return true
		}
	}
	return false
}

// at is the value at a dotted path.
func at(doc any, path string) (any, bool) {
	v := doc
	for _, key := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[key]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}
