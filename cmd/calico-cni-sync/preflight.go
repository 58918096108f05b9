package main

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// readCAFile reads --ca-file and insists it is what the kubeconfig's
// certificate-authority-data must be: PEM certificates. Anything else (the
// token file given in its place, a key, a DER file) would be written into the
// kubeconfig and only fail later, in the CNI plugin's TLS handshake. The
// certificates are not parsed: the PEM shape is what a mix-up breaks. The
// message never quotes the file: it may be the token.
func readCAFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --ca-file: %w", err)
	}
	rest, n := data, 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("--ca-file %s holds a PEM %q block: it must be a PEM certificate (-----BEGIN CERTIFICATE-----)", path, block.Type)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("--ca-file %s must be a PEM certificate and holds no readable -----BEGIN CERTIFICATE----- block: give the cluster's CA (ca.crt), not the token", path)
	}
	return data, nil
}

// checkWritable is run before the first write, so a command that cannot
// keep its record or its backups stops with nothing changed, naming the flag
// that moves them (the defaults under /var/lib need root). It creates
// nothing: it asks the kernel whether the first existing directory on the
// way may be written (access(2): the real uid, a read-only mount included).
func checkWritable(flag, dir string) error {
	p := dir
	for {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("%s %s: %s is not a directory; point %s elsewhere", flag, dir, p, flag)
		case err == nil:
			if err := canWriteIn(p); err != nil {
				return fmt.Errorf("%s %s: cannot write in %s (%w): run as root or point %s at a writable directory", flag, dir, p, err, flag)
			}
			return nil
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("%s %s: %w", flag, dir, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

// checkWritableDirs checks the directories a writing command needs.
func checkWritableDirs(o *Options, statusFile bool) error {
	errs := []error{
		checkWritable("--cni-net-dir", o.CNINetDir),
		checkWritable("--state-dir", o.StateDir),
		checkWritable("--backup-dir", o.BackupDir),
	}
	if statusFile && o.StatusFile != "" {
		errs = append(errs, checkWritable("--status-file", filepath.Dir(o.StatusFile)))
	}
	return errors.Join(errs...)
}

// checkNetDirParent lets a command create --cni-net-dir itself, but not the
// directories above it: a mistyped path (/etc/cin/net.d) must fail, naming
// the flag, rather than leave a tree the container runtime never reads.
func checkNetDirParent(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("--cni-net-dir %s is not a directory", dir)
	case err == nil:
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("--cni-net-dir %s: %w", dir, err)
	}
	parent := filepath.Dir(dir)
	pfi, err := os.Stat(parent)
	if err != nil || !pfi.IsDir() {
		return fmt.Errorf("--cni-net-dir %s does not exist, and neither does its parent %s: check the path (only the last element is created)", dir, parent)
	}
	return nil
}
