package oa_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/enclosure/oa"
	"github.com/provisiond/provisiond/internal/enclosure/oa/oatest"
)

func testBlade() *oatest.Blade {
	return &oatest.Blade{Bay: 3, Product: "ProLiant BL460c Gen8", PartNumber: "641016-B21", Serial: "CZ3403YLMV", UUID: "641016CZ3403YLMV",
		CUUID: "30313436-3631-5A43-3334-3033594C4D56", ILOAddress: "192.0.2.103", MACs: []string{"9c:b6:54:88:fc:b0", "9c:b6:54:88:fc:b4"},
		CPUs: []string{"Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz"}, CPUMHz: 2600, MemoryMB: 65536}
}

// serve starts a test OA over TLS and returns it with its address.
func serve(t *testing.T, s *oatest.Server) string {
	t.Helper()
	srv := httptest.NewTLSServer(s.Handler())
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

// One login for every bay: blade info (CPUs, memory, NICs), status, the
// iLO, one-time PXE before power, UID; logout ends the session.
func TestSession(t *testing.T) {
	ts := oatest.New("ASGARD", "CZ372137H3", "Administrator", "s3cret", testBlade())
	c := &oa.Client{Addresses: []string{serve(t, ts)}, User: "Administrator", Password: "s3cret"}
	ctx := t.Context()
	s, err := c.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.BladeInfo(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if info.Serial != "CZ3403YLMV" || len(info.CPUs) != 2 || info.CPUs[0].SpeedMHz != 2600 || !strings.Contains(info.CPUs[1].Type, "E5-2670") ||
		info.MemoryMB != 65536 || len(info.NICs) != 2 || info.NICs[1].MAC != "9C:B6:54:88:FC:B4" {
		t.Errorf("blade info %+v", info)
	}
	st, err := s.BladeStatus(ctx, 3)
	if err != nil || st.On() || st.UID != "UID_OFF" {
		t.Fatalf("status %+v, %v", st, err)
	}
	mp, err := s.BladeMpInfo(ctx, 3)
	if err != nil || mp.IPAddress != "192.0.2.103" || mp.Model != "iLO4" {
		t.Fatalf("iLO %+v, %v", mp, err)
	}
	if err := s.PXEOnce(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPower(ctx, 3, oa.PowerPress); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUID(ctx, 3, oa.UIDBlink); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.BladeStatus(ctx, 3); !st.On() || st.UID != "UID_BLINK" {
		t.Errorf("after power and UID: %+v", st)
	}
	if _, err := s.BladeInfo(ctx, 5); err == nil || !strings.Contains(err.Error(), "no blade in bay 5") {
		t.Errorf("empty bay: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ts.Sessions(); n != 0 {
		t.Errorf("%d sessions left after logout", n)
	}
	want := "userLogIn,getBladeInfo 3,getBladeStatus 3,getBladeMpInfo 3,setBladeOneTimeBoot 3 PXE,setBladePower 3 MOMENTARY_PRESS,setBladeUid 3 UID_CMD_BLINK,getBladeStatus 3,userLogOut"
	if got := strings.Join(ts.Calls(), ","); got != want {
		t.Errorf("calls\n %s\nwant\n %s", got, want)
	}
	// The session's key is gone: a call after logout is refused.
	if _, err := s.BladeStatus(ctx, 3); err == nil {
		t.Error("a call after logout was answered")
	}
}

// Wrong credentials are a clear error that names the OA and says what to
// check; they are not tried on the other OA.
func TestWrongCredentials(t *testing.T) {
	ts := oatest.New("ASGARD", "CZ1", "Administrator", "s3cret", testBlade())
	other := oatest.New("ASGARD", "CZ1", "Administrator", "s3cret")
	other.Standby = true
	a, b := serve(t, ts), serve(t, other)
	c := &oa.Client{Addresses: []string{a, b}, User: "Administrator", Password: "wrong"}
	_, err := c.Login(t.Context())
	var f *oa.Fault
	if !errors.As(err, &f) || f.ErrorCode != 2 || !strings.Contains(err.Error(), "could not be authenticated") || !strings.Contains(err.Error(), "check the enclosure's user and password") || !strings.Contains(err.Error(), a) {
		t.Fatalf("wrong password: %v", err)
	}
	if got := other.Calls(); len(got) != 0 {
		t.Errorf("the other OA was asked: %v", got)
	}
}

// The standby OA refuses every call; the client logs in to the active one
// even when the standby is named first.
func TestFailOverToActive(t *testing.T) {
	standby := oatest.New("ASGARD", "CZ1", "Administrator", "s3cret", testBlade())
	standby.Standby = true
	active := oatest.New("ASGARD", "CZ1", "Administrator", "s3cret", testBlade())
	sa, aa := serve(t, standby), serve(t, active)
	c := &oa.Client{Addresses: []string{sa, aa}, User: "Administrator", Password: "s3cret"}
	s, err := c.Login(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	if s.Address() != aa {
		t.Errorf("logged in to %s, the active OA is %s", s.Address(), aa)
	}
	if _, err := s.BladeStatus(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	// Both OAs down but the standby: no session, and the error says why.
	only := &oa.Client{Addresses: []string{sa}, User: "Administrator", Password: "s3cret"}
	if _, err := only.Login(t.Context()); err == nil || !errors.Is(err, oa.ErrStandby) {
		t.Errorf("standby only: %v", err)
	}
}

// "Enclosure Busy" on a power request is retried with back-off and
// counted; a busy OA that stays busy is an error that says so.
func TestBusyRetried(t *testing.T) {
	ts := oatest.New("ASGARD", "CZ1", "Administrator", "s3cret", testBlade())
	c := &oa.Client{Addresses: []string{serve(t, ts)}, User: "Administrator", Password: "s3cret", BusyBackoff: 10 * time.Millisecond, BusyRetries: 3}
	s, err := c.Login(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	ts.Busy(2)
	if err := s.SetPower(t.Context(), 3, oa.PowerColdBoot); err != nil {
		t.Fatal(err)
	}
	if s.Retries != 2 {
		t.Errorf("retries %d, want 2", s.Retries)
	}
	if b, _ := ts.Blade(3); !b.On {
		t.Error("not powered after the retries")
	}
	ts.Busy(10)
	err = s.SetPower(t.Context(), 3, oa.PowerHold)
	if err == nil || !strings.Contains(err.Error(), "Enclosure Busy") || !strings.Contains(err.Error(), "after 3 retries") {
		t.Errorf("still busy: %v", err)
	}
}
