package controlplane

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const (
	modulePath = "github.com/calico-cni-sync/calico-cni-sync"
	binDirEnv  = "CONTROLPLANE_BIN_DIR"
)

// requiredBinaries are the programs Start runs from the bin dir.
var requiredBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// saKeys is one generation of the service-account signing key pair.
type saKeys struct {
	generation int
	public     string // PEM public key file (--service-account-key-file)
	private    string // PEM private key file (signing key)
}

// newSAKeys generates an RSA key pair as sa-<generation>.{key,pub} in dir.
func newSAKeys(dir string, generation int) (saKeys, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return saKeys{}, fmt.Errorf("generate service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return saKeys{}, fmt.Errorf("marshal service account public key: %w", err)
	}
	k := saKeys{
		generation: generation,
		public:     filepath.Join(dir, fmt.Sprintf("sa-%d.pub", generation)),
		private:    filepath.Join(dir, fmt.Sprintf("sa-%d.key", generation)),
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(k.private, privPEM, 0o600); err != nil {
		return saKeys{}, fmt.Errorf("write service account private key: %w", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	if err := os.WriteFile(k.public, pubPEM, 0o600); err != nil {
		return saKeys{}, fmt.Errorf("write service account public key: %w", err)
	}
	return k, nil
}

// configure points the API server at this key pair only, so tokens signed
// by earlier generations are rejected.
func (k saKeys) configure(args *envtest.Arguments) {
	args.Set("service-account-key-file", k.public)
	args.Set("service-account-signing-key-file", k.private)
}

// findBinDir returns $CONTROLPLANE_BIN_DIR or <module root>/test/bin and
// checks that every required binary is there.
func findBinDir() (string, error) {
	dir := os.Getenv(binDirEnv)
	if dir == "" {
		root, err := findModuleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "test", "bin")
	}
	for _, name := range requiredBinaries {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return "", binariesNotFound(dir)
		}
	}
	return dir, nil
}

// binariesNotFound is the error tests fail with when the binaries are missing.
func binariesNotFound(dir string) error {
	return fmt.Errorf("control plane binaries not found in %s: run \"make control-plane\"", dir)
}

// findModuleRoot walks up from the working directory to the directory whose
// go.mod declares this module (nested modules such as test/tools are skipped).
func findModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if moduleName(filepath.Join(dir, "go.mod")) == modulePath {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", binariesNotFound(fmt.Sprintf("test/bin of module %s (no go.mod for it above %s)", modulePath, wd))
		}
	}
}

// moduleName returns the module path declared in a go.mod file, or "".
func moduleName(goMod string) string {
	f, err := os.Open(goMod)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			if i := strings.Index(rest, "//"); i >= 0 {
				rest = rest[:i]
			}
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
