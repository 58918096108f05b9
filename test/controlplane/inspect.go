package controlplane

// APIServerPID returns the pid of the running kube-apiserver, or 0 when it
// is stopped, so that benchmarks can read its memory and CPU from /proc.
func (c *ControlPlane) APIServerPID() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.plane == nil || !c.apiRunning {
		return 0, nil
	}
	return envtestPID(c.plane.APIServer)
}
