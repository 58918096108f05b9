package rollout

import (
	"testing"
	"time"
)

func TestStateRoundTrip(t *testing.T) {
	in := State{Revision: "sha256:0123456789abcdef", Phase: RolledBack, Wave: 0,
		Since: time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC), Reason: "FailedCreatePodSandBox on node-1"}
	v, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, ok, err := Decode(v)
	if err != nil || !ok {
		t.Fatalf("Decode(%s) = %v, %v", v, ok, err)
	}
	if out != in {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
}

func TestDecodeRefusesWhatItCannotRead(t *testing.T) {
	if _, ok, err := Decode(""); ok || err != nil {
		t.Fatalf("empty: ok %v err %v, want no state and no error", ok, err)
	}
	for _, v := range []string{"{", `{"revision":"x","phase":"done"}`, `{"revision":"x"}`} {
		if _, ok, err := Decode(v); ok || err == nil {
			t.Errorf("Decode(%s): ok %v err %v, want an error", v, ok, err)
		}
	}
	if _, err := (State{Phase: "done"}).Encode(); err == nil {
		t.Error("Encode of an unknown phase: want an error")
	}
}
