// Package token knows what a service-account token is and whether one is
// fit for the node: its claims, read without verifying them; the token
// policies (own, guard, auto); the health judge and the one function,
// RepairDue, that says whether a pass under policy guard writes the
// source's token; and the cache of the API server's verdicts, which asks
// through a function it is given.
//
// It is pure: it must not import client-go or any other package of this
// module. Where tokens come from (a file, a Secret, the TokenRequest API) is
// package sync/inputs's business.
package token
