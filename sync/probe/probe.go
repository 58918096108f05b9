package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// Verdict is what a plugin would get from the API server with a credential.
type Verdict string

// The verdicts. Unreachable says nothing about the credential: the caller
// keeps the last verdict it had.
const (
	OK          Verdict = "ok"
	Expired     Verdict = "expired"
	Rejected    Verdict = "rejected"
	Forbidden   Verdict = "forbidden"
	Untrusted   Verdict = "untrusted"
	Unreachable Verdict = "unreachable"
)

// Credential is what a plugin authenticates with, exactly as found on disk:
// nothing is added from the agent's own configuration.
type Credential struct {
	// Server is the API server's URL.
	Server string
	// CAData is the CA bundle the file holds; CAFile a CA file it names
	// (a v2.x conf's k8s_certificate_authority). Neither: the system's
	// roots, as client-go does for the plugin.
	CAData []byte
	CAFile string
	// Insecure is the file's insecure-skip-tls-verify: the plugin does not
	// verify the server, and neither does the probe.
	Insecure bool
	// Token is the bearer token; CertFile and KeyFile a client certificate
	// (a v2.x conf's k8s_client_certificate and k8s_client_key).
	Token             string
	CertFile, KeyFile string
}

// Access is one thing a plugin must be allowed to do.
type Access struct {
	Verb, Group, Resource, Namespace string
}

// String is "get clusterinformations.crd.projectcalico.org", as an
// operator writes it in a ClusterRole.
func (a Access) String() string {
	r := a.Resource
	if a.Group != "" {
		r += "." + a.Group
	}
	s := a.Verb + " " + r
	if a.Namespace != "" {
		s += " in namespace " + a.Namespace
	}
	return s
}

// Request is the request a plugin makes first with its credential. With a
// Resource, the probe makes it: a GET of the named object. Without one (the
// plugin's first request is not known), the probe asks who the token is (a
// SelfSubjectReview) and whether it may do each of Needs (a
// SelfSubjectAccessReview each).
type Request struct {
	Group, Version, Resource, Namespace, Name string
	Needs                                     []Access
}

// path is the object's API path.
func (r Request) path() string {
	p := "/api/" + r.Version
	if r.Group != "" {
		p = "/apis/" + r.Group + "/" + r.Version
	}
	if r.Namespace != "" {
		p += "/namespaces/" + r.Namespace
	}
	return p + "/" + r.Resource + "/" + r.Name
}

// access is what the GET needs.
func (r Request) access() Access {
	return Access{Verb: "get", Group: r.Group, Resource: r.Resource, Namespace: r.Namespace}
}

// CalicoFirst is Calico's first request since v3.0: the CNI plugin's ADD
// (and its DEL) begins with ClusterInformation().Get("default"), which
// libcalico-go's Kubernetes backend serves from
// crd.projectcalico.org/v1 clusterinformations.
var CalicoFirst = Request{Group: "crd.projectcalico.org", Version: "v1", Resource: "clusterinformations", Name: "default"}

// PodGet is the first request of the plugins that read the pod being
// networked (Multus, istio-cni, linkerd-cni, Calico v2.x's policy driver):
// a GET of a pod. The probe has no sandbox, so it GETs a pod that need not
// exist: the API server authorizes a GET before it looks the object up,
// so a 404 says the credential would have been allowed.
func PodGet(namespace, name string) Request {
	return Request{Version: "v1", Resource: "pods", Namespace: namespace, Name: name}
}

// WhereaboutsNeeds is what the Whereabouts IPAM plugin must be allowed to
// do to hand out an address: read and update its IPPool, reserve the
// address and take its lock (a Lease). Its first request is not pinned
// down here, so these are checked by review.
var WhereaboutsNeeds = Request{Needs: []Access{
	{Verb: "get", Group: "whereabouts.cni.cncf.io", Resource: "ippools"},
	{Verb: "update", Group: "whereabouts.cni.cncf.io", Resource: "ippools"},
	{Verb: "create", Group: "whereabouts.cni.cncf.io", Resource: "overlappingrangeipreservations"},
	{Verb: "create", Group: "coordination.k8s.io", Resource: "leases"},
}}

// Outcome is the probe's finding about one credential.
type Outcome struct {
	Verdict Verdict
	// Message says why, in words an operator can act on; never the token.
	Message string
	// Subject is the user name the token's claims give (empty for a token
	// that is not a JWT): a caller compares it with the account it expects.
	Subject string
	// Refused is what the API server refused, for Forbidden.
	Refused *Access
	// Requests is how many requests the probe made (0 for Expired).
	Requests int
}

// DefaultTimeout bounds one probe: the plugin's own connection test gives
// up after 2 s; a probe is allowed a little more before it says
// Unreachable.
const DefaultTimeout = 5 * time.Second

// Prober makes a plugin's first request with the plugin's credential.
type Prober struct {
	// Timeout bounds the whole probe (0: DefaultTimeout).
	Timeout time.Duration
	// Now is the node's clock, which judges a token's expiry (nil: time.Now).
	Now func() time.Time
}

// Probe judges one credential by making the plugin's request with it, and
// only it: the client is built from the credential alone (no in-cluster
// configuration, no credential of the agent's). A token whose claims say it
// has expired on the node's clock is judged without a request.
func (p Prober) Probe(ctx context.Context, cred Credential, req Request) Outcome {
	claims := token.ParseClaims(cred.Token)
	out := Outcome{Subject: claims.Subject}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	if claims.ExpiresAt != nil && !now().Before(*claims.ExpiresAt) {
		out.Verdict = Expired
		out.Message = "the token expired at " + claims.ExpiresAt.UTC().Format(time.RFC3339)
		return out
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cs, err := kubernetes.NewForConfig(restConfig(cred, timeout))
	if err != nil {
		out.Verdict, out.Message = Unreachable, fmt.Sprintf("build a client for %s: %v", cred.Server, err)
		return out
	}
	if req.Resource != "" {
		out.Requests = 1
		err := cs.CoreV1().RESTClient().Get().AbsPath(req.path()).Do(ctx).Error()
		judge(&out, err, req.access(), cred)
		if out.Verdict == OK && apierrors.IsNotFound(err) {
			out.Message = fmt.Sprintf("allowed to %s; %s %q does not exist, so the plugin would fail for that reason, not for its credential", req.access(), req.Resource, req.Name)
		}
		return out
	}
	out.Requests = 1
	ssr, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if judge(&out, err, Access{Verb: "create", Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}, cred); out.Verdict != OK {
		return out
	}
	if err == nil && ssr != nil && ssr.Status.UserInfo.Username != "" {
		out.Subject = ssr.Status.UserInfo.Username
	}
	for _, a := range req.Needs {
		out.Requests++
		review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.Verb, Group: a.Group, Resource: a.Resource, Namespace: a.Namespace},
		}}, metav1.CreateOptions{})
		if judge(&out, err, Access{Verb: "create", Group: "authorization.k8s.io", Resource: "selfsubjectaccessreviews"}, cred); out.Verdict != OK {
			return out
		}
		if !review.Status.Allowed {
			refused := a
			out.Verdict, out.Refused = Forbidden, &refused
			out.Message = fmt.Sprintf("%s may not %s", orSomeone(out.Subject), a)
			return out
		}
	}
	return out
}

// restConfig is a client configuration built from the credential alone.
func restConfig(cred Credential, timeout time.Duration) *rest.Config {
	return &rest.Config{
		Host:        cred.Server,
		BearerToken: cred.Token,
		TLSClientConfig: rest.TLSClientConfig{
			Insecure: cred.Insecure,
			CAData:   cred.CAData,
			CAFile:   cred.CAFile,
			CertFile: cred.CertFile,
			KeyFile:  cred.KeyFile,
		},
		// JSON both ways: an answer is read the same from any server.
		ContentConfig: rest.ContentConfig{ContentType: "application/json", AcceptContentTypes: "application/json"},
		Timeout:       timeout,
		UserAgent:     "calico-cni-sync/probe",
		// One request per probe: no client-side throttling to wait on.
		QPS:   -1,
		Burst: -1,
	}
}

// judge sets the verdict for a request's error (nil: OK; a 404: OK, the
// request was authorized).
func judge(out *Outcome, err error, access Access, cred Credential) {
	server := cred.Server
	switch {
	case err == nil, apierrors.IsNotFound(err):
		out.Verdict, out.Message = OK, ""
	case apierrors.IsUnauthorized(err):
		out.Verdict = Rejected
		out.Message = "the API server rejected the token (401 Unauthorized)"
	case apierrors.IsForbidden(err):
		refused := refusedAccess(err, access)
		out.Verdict, out.Refused = Forbidden, &refused
		out.Message = fmt.Sprintf("%s may not %s (403 Forbidden)", orSomeone(out.Subject), refused)
	case untrusted(err):
		out.Verdict = Untrusted
		out.Message = fmt.Sprintf("the CA on disk does not verify %s: %v", server, tlsCause(err))
		if len(cred.CAData) == 0 && cred.CAFile == "" {
			out.Message += " (the file holds no CA: the system's roots were used, as the plugin uses them)"
		}
	default:
		out.Verdict = Unreachable
		out.Message = fmt.Sprintf("no verdict from %s: %v", server, err)
	}
}

// refusedAccess names what a 403 refused from its Status details (the
// resource, its group), with the verb of the request made.
func refusedAccess(err error, asked Access) Access {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return asked
	}
	d := status.Status().Details
	if d == nil || d.Kind == "" {
		return asked
	}
	return Access{Verb: asked.Verb, Group: d.Group, Resource: d.Kind, Namespace: asked.Namespace}
}

// untrusted reports a failure to verify the server's certificate.
func untrusted(err error) bool {
	var verr *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	return errors.As(err, &verr) || errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host)
}

// tlsCause is the certificate error itself, without the URL around it.
func tlsCause(err error) error {
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) && verr.Err != nil {
		return verr.Err
	}
	return err
}

func orSomeone(subject string) string {
	if subject == "" {
		return "the token's user"
	}
	return subject
}

// Hint names where an operator looks when a credential is refused: the
// binding that should grant it. Calico's manifests and its operator name
// the CNI plugin's ClusterRoleBinding after its account (calico-cni-plugin,
// or calico-node before v3.26).
func Hint(plugin, subject string) string {
	parts := strings.Split(subject, ":")
	if len(parts) == 4 && parts[0] == "system" && parts[1] == "serviceaccount" {
		if plugin == PluginCalico {
			return fmt.Sprintf("check the ClusterRoleBinding %s: it must bind ServiceAccount %s/%s to a ClusterRole that allows this", parts[3], parts[2], parts[3])
		}
		return fmt.Sprintf("check the ClusterRoleBindings of ServiceAccount %s/%s", parts[2], parts[3])
	}
	return "check the RBAC bindings of the credential's user"
}

// Verifies says whether ca verifies the TLS certificate of the API server
// at server: nil when a request over a connection that trusts ca alone got
// any HTTP answer (the handshake verified the server; what the answer says
// does not matter, no credential is sent). A candidate CA is checked so
// before it replaces one that does not verify the server: a CA that does
// not help is never written. The error says why it does not (untrusted
// reports a certificate error, as Probe's verdict does).
func (p Prober) Verifies(ctx context.Context, server string, ca []byte) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := restConfig(Credential{Server: server, CAData: ca}, timeout)
	if len(ca) == 0 {
		return errors.New("no CA")
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("build a client for %s: %w", server, err)
	}
	err = cs.CoreV1().RESTClient().Get().AbsPath("/version").Do(ctx).Error()
	var status apierrors.APIStatus
	switch {
	case err == nil, errors.As(err, &status):
		return nil
	case untrusted(err):
		return &UntrustedError{Err: tlsCause(err)}
	default:
		return err
	}
}

// UntrustedError is a CA that does not verify the server's certificate.
type UntrustedError struct{ Err error }

func (e *UntrustedError) Error() string { return e.Err.Error() }
func (e *UntrustedError) Unwrap() error { return e.Err }
