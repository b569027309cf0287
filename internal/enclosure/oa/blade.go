package oa

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// BladeInfo is getBladeInfo's answer: what the blade is made of.
type BladeInfo struct {
	Bay int `xml:"bayNumber"`
	// Presence is PRESENT, ABSENT or SUBSUMED (a bay a double-wide blade
	// takes up).
	Presence     string `xml:"presence"`
	Name         string `xml:"name"`
	PartNumber   string `xml:"partNumber"`
	Serial       string `xml:"serialNumber"`
	ServerName   string `xml:"serverName"`
	UUID         string `xml:"uuid"`
	ROM          string `xml:"romVersion"`
	NumberOfCPUs int    `xml:"numberOfCpus"`
	CPUs         []CPU  `xml:"cpus>bladeCpuInfo"`
	// MemoryMB is the installed memory in MiB.
	MemoryMB int        `xml:"memory"`
	NICs     []BladeNIC `xml:"nics>bladeNicInfo"`
}

// CPU is one processor socket as the OA reports it.
type CPU struct {
	Type string `xml:"cpuType"`
	// SpeedMHz is its clock.
	SpeedMHz int `xml:"cpuSpeed"`
}

// BladeNIC is one NIC getBladeInfo lists.
type BladeNIC struct {
	Port string `xml:"port"`
	MAC  string `xml:"macAddress"`
}

// BladeStatus is getBladeStatus's answer.
type BladeStatus struct {
	Bay               int    `xml:"bayNumber"`
	Presence          string `xml:"presence"`
	OperationalStatus string `xml:"operationalStatus"`
	// Powered is POWER_ON, POWER_OFF, POWER_STAGED_OFF or POWER_REBOOT.
	Powered string `xml:"powered"`
	// UID is UID_ON, UID_OFF or UID_BLINK.
	UID string `xml:"uid"`
	// Watts is what the blade draws now.
	Watts int `xml:"powerConsumed"`
}

// On reports whether the blade is powered.
func (s BladeStatus) On() bool { return s.Powered == "POWER_ON" || s.Powered == "POWER_REBOOT" }

// BladeMpInfo is getBladeMpInfo's answer: the blade's iLO.
type BladeMpInfo struct {
	Bay       int    `xml:"bayNumber"`
	IPAddress string `xml:"ipAddress"`
	MAC       string `xml:"macAddress"`
	DNSName   string `xml:"dnsName"`
	Model     string `xml:"modelName"`
	Firmware  string `xml:"fwVersion"`
}

// Power actions of setBladePower, as the OA names them.
const (
	// PowerPress is a short press of the power button: on when off, a
	// clean shutdown request when on.
	PowerPress = "MOMENTARY_PRESS"
	// PowerHold holds the button: off, at once.
	PowerHold = "PRESS_AND_HOLD"
	// PowerColdBoot turns the blade off and on again.
	PowerColdBoot = "COLD_BOOT"
	// PowerReset resets it (warm).
	PowerReset = "RESET"
)

// UID LED commands of setBladeUid.
const (
	UIDOn    = "UID_CMD_ON"
	UIDOff   = "UID_CMD_OFF"
	UIDBlink = "UID_CMD_BLINK"
)

func bayArg(bay int) string {
	return "<hpoa:bayNumber>" + strconv.Itoa(bay) + "</hpoa:bayNumber>"
}

func checkBay(bay int) error {
	if bay < 1 || bay > 16 {
		return fmt.Errorf("bay %d: a c7000 has device bays 1 to 16", bay)
	}
	return nil
}

// BladeInfo asks for a blade's CPUs, memory and NICs.
func (s *Session) BladeInfo(ctx context.Context, bay int) (*BladeInfo, error) {
	if err := checkBay(bay); err != nil {
		return nil, err
	}
	var out struct {
		Info BladeInfo `xml:"getBladeInfoResponse>bladeInfo"`
	}
	if err := s.call(ctx, "<hpoa:getBladeInfo>"+bayArg(bay)+"</hpoa:getBladeInfo>", &out); err != nil {
		return nil, fmt.Errorf("bay %d: blade info: %w", bay, err)
	}
	i := &out.Info
	i.Serial, i.PartNumber, i.UUID = clean(i.Serial), clean(i.PartNumber), clean(i.UUID)
	return i, nil
}

// BladeStatus asks for a blade's power, health and UID.
func (s *Session) BladeStatus(ctx context.Context, bay int) (*BladeStatus, error) {
	if err := checkBay(bay); err != nil {
		return nil, err
	}
	var out struct {
		Status BladeStatus `xml:"getBladeStatusResponse>bladeStatus"`
	}
	if err := s.call(ctx, "<hpoa:getBladeStatus>"+bayArg(bay)+"</hpoa:getBladeStatus>", &out); err != nil {
		return nil, fmt.Errorf("bay %d: blade status: %w", bay, err)
	}
	return &out.Status, nil
}

// BladeMpInfo asks for a blade's iLO address and firmware.
func (s *Session) BladeMpInfo(ctx context.Context, bay int) (*BladeMpInfo, error) {
	if err := checkBay(bay); err != nil {
		return nil, err
	}
	var out struct {
		Info BladeMpInfo `xml:"getBladeMpInfoResponse>bladeMpInfo"`
	}
	if err := s.call(ctx, "<hpoa:getBladeMpInfo>"+bayArg(bay)+"</hpoa:getBladeMpInfo>", &out); err != nil {
		return nil, fmt.Errorf("bay %d: iLO info: %w", bay, err)
	}
	return &out.Info, nil
}

// ok decodes an answer that only says it worked.
type ok struct {
	Inner []byte `xml:",innerxml"`
}

// PXEOnce makes the blade boot from the network once, at its next boot.
func (s *Session) PXEOnce(ctx context.Context, bay int) error {
	if err := checkBay(bay); err != nil {
		return err
	}
	body := "<hpoa:setBladeOneTimeBoot>" + bayArg(bay) +
		"<hpoa:oneTimeBootDevice>ONE_TIME_BOOT_NO_CHANGE</hpoa:oneTimeBootDevice>" +
		"<hpoa:oneTimeBootAgent>PXE</hpoa:oneTimeBootAgent>" +
		"<hpoa:oneTimeBypassF1F2Messages>true</hpoa:oneTimeBypassF1F2Messages></hpoa:setBladeOneTimeBoot>"
	if err := s.call(ctx, body, &ok{}); err != nil {
		return fmt.Errorf("bay %d: one-time PXE boot: %w", bay, err)
	}
	return nil
}

// SetPower sends a power action (PowerPress, PowerHold, PowerColdBoot,
// PowerReset); an enclosure that is busy is asked again.
func (s *Session) SetPower(ctx context.Context, bay int, action string) error {
	if err := checkBay(bay); err != nil {
		return err
	}
	switch action {
	case PowerPress, PowerHold, PowerColdBoot, PowerReset:
	default:
		return fmt.Errorf("power action %q is not %s, %s, %s or %s", action, PowerPress, PowerHold, PowerColdBoot, PowerReset)
	}
	body := "<hpoa:setBladePower>" + bayArg(bay) + "<hpoa:power>" + action + "</hpoa:power></hpoa:setBladePower>"
	if err := s.call(ctx, body, &ok{}); err != nil {
		return fmt.Errorf("bay %d: power %s: %w", bay, strings.ToLower(action), err)
	}
	return nil
}

// SetUID turns the blade's locator LED on, off or blinking.
func (s *Session) SetUID(ctx context.Context, bay int, cmd string) error {
	if err := checkBay(bay); err != nil {
		return err
	}
	switch cmd {
	case UIDOn, UIDOff, UIDBlink:
	default:
		return fmt.Errorf("UID command %q is not %s, %s or %s", cmd, UIDOn, UIDOff, UIDBlink)
	}
	body := "<hpoa:setBladeUid>" + bayArg(bay) + "<hpoa:uid>" + cmd + "</hpoa:uid></hpoa:setBladeUid>"
	if err := s.call(ctx, body, &ok{}); err != nil {
		return fmt.Errorf("bay %d: UID %s: %w", bay, cmd, err)
	}
	return nil
}
