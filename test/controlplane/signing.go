package controlplane

// SigningKeyFile returns the PEM file (PKCS#1 "RSA PRIVATE KEY") of the key
// the API server signs service-account tokens with now; StartAPIServer with
// rotateSigningKey replaces it. Tests use it to mint tokens the API server
// accepts but would never issue itself, such as one issued a day ago with
// little of its lifetime left, to check how a client judges such a token.
func (c *ControlPlane) SigningKeyFile() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys.private
}
