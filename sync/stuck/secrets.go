package stuck

// SecretSet is the Secrets some pods mount, by namespace and name, and
// whether each was found to exist. It holds names only, never data.
type SecretSet map[string]map[string]bool

// Want notes a Secret to check.
func (s SecretSet) Want(namespace, name string) {
	if s[namespace] == nil {
		s[namespace] = map[string]bool{}
	}
	if _, ok := s[namespace][name]; !ok {
		s[namespace][name] = false
	}
}

// Found records that a Secret exists, when it is one to check.
func (s SecretSet) Found(namespace, name string) {
	if _, wanted := s[namespace][name]; wanted {
		s[namespace][name] = true
	}
}

// Exists says whether a Secret exists. One never checked (a pod made since
// the Secrets were listed) counts as existing: unknown is not missing.
func (s SecretSet) Exists(namespace, name string) bool {
	exists, checked := s[namespace][name]
	return exists || !checked
}
