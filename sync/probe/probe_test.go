package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// jwt is an unsigned token with the given claims: the probe reads claims,
// the server in these tests does not verify them.
func jwt(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(b) + ".c2ln"
}

const calicoSubject = "system:serviceaccount:kube-system:calico-cni-plugin"

func validToken(now time.Time) string {
	return jwt(map[string]any{"sub": calicoSubject, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
}

// server answers every request with status and body, counting requests.
type server struct {
	*httptest.Server
	hits atomic.Int32
	path atomic.Value
}

func newServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.path.Store(r.Method + " " + r.URL.Path)
		handler(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) ca() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

func status(code int, reason, kind, group string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"m","reason":%q,"details":{"name":"default","group":%q,"kind":%q},"code":%d}`, reason, group, kind, code)
	}
}

func TestProbeVerdictByAnswer(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name    string
		handler func(http.ResponseWriter, *http.Request)
		want    Verdict
		message string
		refused *Access
	}{
		{"ok", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"apiVersion":"crd.projectcalico.org/v1","kind":"ClusterInformation","metadata":{"name":"default"}}`))
		}, OK, "", nil},
		{"not found is allowed", status(404, "NotFound", "clusterinformations", "crd.projectcalico.org"), OK, "does not exist", nil},
		{"401", status(401, "Unauthorized", "", ""), Rejected, "401", nil},
		{"403 names what was refused", status(403, "Forbidden", "clusterinformations", "crd.projectcalico.org"), Forbidden,
			calicoSubject + " may not get clusterinformations.crd.projectcalico.org",
			&Access{Verb: "get", Group: "crd.projectcalico.org", Resource: "clusterinformations"}},
		{"503 says nothing of the credential", status(503, "ServiceUnavailable", "", ""), Unreachable, "no verdict", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.handler)
			cred := Credential{Server: s.URL, CAData: s.ca(), Token: validToken(now)}
			out := Prober{}.Probe(context.Background(), cred, CalicoFirst)
			if out.Verdict != tc.want || !strings.Contains(out.Message, tc.message) {
				t.Fatalf("verdict %s %q, want %s containing %q", out.Verdict, out.Message, tc.want, tc.message)
			}
			if got := s.path.Load(); got != "GET /apis/crd.projectcalico.org/v1/clusterinformations/default" {
				t.Errorf("request %v, want Calico's GET of clusterinformations/default", got)
			}
			if tc.refused != nil && (out.Refused == nil || *out.Refused != *tc.refused) {
				t.Errorf("refused %+v, want %+v", out.Refused, tc.refused)
			}
			if out.Subject != calicoSubject {
				t.Errorf("subject %q", out.Subject)
			}
			if strings.Contains(out.Message, cred.Token) {
				t.Errorf("message holds the token: %s", out.Message)
			}
		})
	}
}

// otherCA is a CA that signed nothing the test servers present.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestProbeTLS(t *testing.T) {
	now := time.Now()
	s := newServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{}`)) })
	for _, tc := range []struct {
		name string
		cred Credential
		want Verdict
	}{
		{"another CA", Credential{Server: s.URL, CAData: otherCA(t)}, Untrusted},
		{"no CA: the system's roots", Credential{Server: s.URL}, Untrusted},
		{"insecure-skip-tls-verify is honoured", Credential{Server: s.URL, Insecure: true}, OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cred.Token = validToken(now)
			out := Prober{}.Probe(context.Background(), tc.cred, CalicoFirst)
			if out.Verdict != tc.want {
				t.Fatalf("verdict %s (%s), want %s", out.Verdict, out.Message, tc.want)
			}
			if tc.want == Untrusted && !strings.Contains(out.Message, "x509") {
				t.Errorf("message %q does not give the certificate error", out.Message)
			}
		})
	}
}

// TestVerifies: a candidate CA is checked by a request over a connection
// that trusts it alone. Any HTTP answer (a 401 included) says the handshake
// verified the server; a certificate error is an UntrustedError; no answer
// is neither.
func TestVerifies(t *testing.T) {
	s := newServer(t, status(401, "Unauthorized", "", ""))
	var untrusted *UntrustedError
	if err := (Prober{}).Verifies(context.Background(), s.URL, s.ca()); err != nil {
		t.Fatalf("the server's own CA: %v", err)
	}
	if got := s.path.Load(); got != "GET /version" {
		t.Fatalf("request %v, want GET /version", got)
	}
	if err := (Prober{}).Verifies(context.Background(), s.URL, otherCA(t)); !errors.As(err, &untrusted) {
		t.Fatalf("another CA: %v, want an UntrustedError", err)
	}
	if err := (Prober{}).Verifies(context.Background(), s.URL, nil); err == nil {
		t.Fatal("no CA verified the server")
	}
	s.Close()
	if err := (Prober{Timeout: time.Second}).Verifies(context.Background(), s.URL, s.ca()); err == nil || errors.As(err, &untrusted) {
		t.Fatalf("a closed server: %v, want an error that is no UntrustedError", err)
	}
}

// TestProbeExpiredMakesNoRequest: the claims decide on the node's clock.
func TestProbeExpiredMakesNoRequest(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{}`)) })
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tok := jwt(map[string]any{"sub": calicoSubject, "iat": issued.Unix(), "exp": issued.Add(time.Hour).Unix()})
	cred := Credential{Server: s.URL, CAData: s.ca(), Token: tok}

	out := Prober{Now: func() time.Time { return issued.Add(time.Hour) }}.Probe(context.Background(), cred, CalicoFirst)
	if out.Verdict != Expired || out.Requests != 0 || s.hits.Load() != 0 {
		t.Fatalf("verdict %s, %d requests (server saw %d), want expired with none", out.Verdict, out.Requests, s.hits.Load())
	}
	if !strings.Contains(out.Message, "2026-01-01T01:00:00Z") {
		t.Errorf("message %q does not say when", out.Message)
	}
	// A second before its expiry on the node's clock, it is asked.
	out = Prober{Now: func() time.Time { return issued.Add(time.Hour - time.Second) }}.Probe(context.Background(), cred, CalicoFirst)
	if out.Verdict != OK || s.hits.Load() != 1 {
		t.Fatalf("verdict %s with %d requests, want ok after one", out.Verdict, s.hits.Load())
	}
}

func TestProbeUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	start := time.Now()
	out := Prober{Timeout: 2 * time.Second}.Probe(context.Background(), Credential{Server: "https://" + addr, Token: validToken(start)}, CalicoFirst)
	if out.Verdict != Unreachable {
		t.Fatalf("verdict %s (%s), want unreachable", out.Verdict, out.Message)
	}
	// A server that accepts and never answers is bounded by the timeout.
	hang := newServer(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	start = time.Now()
	out = Prober{Timeout: 300 * time.Millisecond}.Probe(context.Background(), Credential{Server: hang.URL, CAData: hang.ca(), Token: validToken(start)}, CalicoFirst)
	if out.Verdict != Unreachable || time.Since(start) > 10*time.Second {
		t.Fatalf("verdict %s after %s, want unreachable within the timeout", out.Verdict, time.Since(start))
	}
}

// TestProbeReview: a plugin whose first request is not known is asked who
// it is, then whether it may do what it needs.
func TestProbeReview(t *testing.T) {
	var asked []string
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/apis/authentication.k8s.io/v1/selfsubjectreviews":
			_, _ = w.Write([]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview","status":{"userInfo":{"username":"system:serviceaccount:kube-system:whereabouts"}}}`))
		case "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
			var review struct {
				Spec struct {
					ResourceAttributes struct{ Verb, Resource string } `json:"resourceAttributes"`
				} `json:"spec"`
			}
			_ = json.NewDecoder(r.Body).Decode(&review)
			a := review.Spec.ResourceAttributes
			asked = append(asked, a.Verb+" "+a.Resource)
			allowed := a.Resource != "leases"
			_, _ = fmt.Fprintf(w, `{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","status":{"allowed":%t}}`, allowed)
		default:
			w.WriteHeader(404)
		}
	})
	out := Prober{}.Probe(context.Background(), Credential{Server: s.URL, CAData: s.ca(), Token: "not-a-jwt"}, WhereaboutsNeeds)
	want := Access{Verb: "create", Group: "coordination.k8s.io", Resource: "leases"}
	if out.Verdict != Forbidden || out.Refused == nil || *out.Refused != want {
		t.Fatalf("verdict %s refused %+v (%s), want forbidden %s", out.Verdict, out.Refused, out.Message, want)
	}
	if out.Subject != "system:serviceaccount:kube-system:whereabouts" || !strings.Contains(out.Message, "may not create leases.coordination.k8s.io") {
		t.Errorf("subject %q message %q", out.Subject, out.Message)
	}
	if strings.Join(asked, ",") != "get ippools,update ippools,create overlappingrangeipreservations,create leases" || out.Requests != 5 {
		t.Errorf("asked %v in %d requests", asked, out.Requests)
	}
}

func TestHint(t *testing.T) {
	if got := Hint(PluginCalico, calicoSubject); !strings.Contains(got, "ClusterRoleBinding calico-cni-plugin") || !strings.Contains(got, "kube-system/calico-cni-plugin") {
		t.Errorf("calico hint %q", got)
	}
	if got := Hint(PluginMultus, "system:serviceaccount:kube-system:multus"); !strings.Contains(got, "kube-system/multus") {
		t.Errorf("multus hint %q", got)
	}
	if got := Hint(PluginMultus, ""); got == "" {
		t.Error("no hint for an unknown user")
	}
}
