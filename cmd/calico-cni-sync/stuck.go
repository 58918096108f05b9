package main

import (
	"context"
	"errors"
	"io"

	"k8s.io/client-go/kubernetes"
)

// runStuck lists the pods a stale or rejected CNI token left stuck.
func runStuck(ctx context.Context, o *Options, client kubernetes.Interface, stdout io.Writer) (int, error) {
	return exitError, errors.New("report --stuck is not implemented yet")
}
