// Package oatest is a test Onboard Administrator: /xmldata?item=all and the
// SOAP calls provisiond makes at /hpoa, built from the structures OpenHPI's
// oa_soap plugin and xCAT's hpblade plugin document (no public recording of
// the SOAP data answers exists). It checks credentials and session keys,
// refuses every call as a standby OA, can play "Enclosure Busy", and calls
// hooks when a blade is powered or set to PXE, so a lab can start QEMU.
package oatest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
)

// Blade is one filled bay of the test enclosure.
type Blade struct {
	Bay                         int
	Product, PartNumber, Serial string
	// UUID is HP's form (part number and serial); CUUID the SMBIOS UUID.
	UUID, CUUID string
	ILOAddress  string
	// MACs are the blade's NIC ports (function a), LOM first.
	MACs     []string
	CPUs     []string
	CPUMHz   int
	MemoryMB int
	// On is the blade's power; UID its LED (ON, OFF, BLINK).
	On  bool
	UID string
	// PXENext is set by a one-time PXE boot and used up by the next
	// power-on.
	PXENext bool
}

// Server is the test OA. Set its fields, then serve Handler.
type Server struct {
	Name, Serial   string
	User, Password string
	// Standby makes it the standby OA: every SOAP call is refused.
	Standby bool
	// Managers are the addresses /xmldata reports for OA bays 1 and 2,
	// with this one's role.
	Managers [2]string
	// OnPower is called after a power action changed a blade (on: its
	// new state; pxe: it was set to PXE once, used up now when on).
	OnPower func(bay int, on, pxe bool)

	mu       sync.Mutex
	blades   map[int]*Blade
	sessions map[string]bool
	busy     int
	calls    []string
	xmlReads int
}

// New returns a test OA holding blades.
func New(name, serial, user, password string, blades ...*Blade) *Server {
	s := &Server{Name: name, Serial: serial, User: user, Password: password, blades: map[int]*Blade{}, sessions: map[string]bool{}}
	for _, b := range blades {
		if b.UID == "" {
			b.UID = "OFF"
		}
		s.blades[b.Bay] = b
	}
	return s
}

// Blade returns bay's blade (a copy), and whether the bay is filled.
func (s *Server) Blade(bay int) (Blade, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blades[bay]
	if !ok {
		return Blade{}, false
	}
	return *b, true
}

// SetPower changes a blade's power from outside (the machine shut itself
// down).
func (s *Server) SetPower(bay int, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.blades[bay]; ok {
		b.On = on
	}
}

// Busy makes the next n power calls fail with "Enclosure Busy".
func (s *Server) Busy(n int) {
	s.mu.Lock()
	s.busy = n
	s.mu.Unlock()
}

// Calls lists the SOAP operations answered, in order ("setBladePower 3
// COLD_BOOT", ...).
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// XMLReads is how often /xmldata was read.
func (s *Server) XMLReads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.xmlReads
}

// Sessions is the number of sessions logged in and not logged out.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// ServeTLS serves Handler over TLS (a self-signed certificate, as an OA
// has) on addr, until the returned server is closed.
func (s *Server) ServeTLS(addr string) (*httptest.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Listener.Close()
	srv.Listener = l
	srv.StartTLS()
	return srv, nil
}

// Handler serves /xmldata and /hpoa.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /xmldata", s.xmldata)
	mux.HandleFunc("POST /hpoa", s.soap)
	return mux
}

type request struct {
	Header struct {
		Key string `xml:"Security>HpOaSessionKeyToken>oaSessionKey"`
	} `xml:"Header"`
	Body struct {
		Ops []op `xml:",any"`
	} `xml:"Body"`
}

type op struct {
	XMLName  xml.Name
	User     string `xml:"username"`
	Password string `xml:"password"`
	Bay      int    `xml:"bayNumber"`
	Power    string `xml:"power"`
	UID      string `xml:"uid"`
	Agent    string `xml:"oneTimeBootAgent"`
}

func (s *Server) soap(w http.ResponseWriter, r *http.Request) {
	var req request
	if err := xml.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Body.Ops) != 1 {
		s.fault(w, "SOAP-ENV:Sender", "", "malformed request", 0, "")
		return
	}
	o := req.Body.Ops[0]
	name := o.XMLName.Local
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Standby {
		s.fault(w, "SOAP-ENV:Receiver", "", "standby", 1, "This Onboard Administrator is in standby mode; use the active Onboard Administrator.")
		return
	}
	if name == "userLogIn" {
		if o.User != s.User || o.Password != s.Password {
			s.fault(w, "SOAP-ENV:Sender", "", "login failed", 2, "The user could not be authenticated.")
			return
		}
		b := make([]byte, 8)
		rand.Read(b)
		key := hex.EncodeToString(b)
		s.sessions[key] = true
		s.calls = append(s.calls, "userLogIn")
		s.answer(w, "<hpoa:userLogInResponse><hpoa:HpOaSessionKeyToken><hpoa:oaSessionKey>"+key+"</hpoa:oaSessionKey></hpoa:HpOaSessionKeyToken></hpoa:userLogInResponse>")
		return
	}
	if !s.sessions[req.Header.Key] {
		s.fault(w, "SOAP-ENV:Sender", "wsse:FailedAuthentication", "The session key is not valid.", 0, "")
		return
	}
	if name == "userLogOut" {
		delete(s.sessions, req.Header.Key)
		s.calls = append(s.calls, "userLogOut")
		s.answer(w, "<hpoa:userLogOutResponse><hpoa:returnCodeOk/></hpoa:userLogOutResponse>")
		return
	}
	b, ok := s.blades[o.Bay]
	if !ok {
		s.fault(w, "SOAP-ENV:Receiver", "", "no blade", 10, fmt.Sprintf("There is no blade in bay %d.", o.Bay))
		return
	}
	call := name + " " + strconv.Itoa(o.Bay)
	switch name {
	case "getBladeInfo":
		s.answer(w, "<hpoa:getBladeInfoResponse>"+bladeInfo(b)+"</hpoa:getBladeInfoResponse>")
	case "getBladeStatus":
		s.answer(w, "<hpoa:getBladeStatusResponse>"+bladeStatus(b)+"</hpoa:getBladeStatusResponse>")
	case "getBladeMpInfo":
		s.answer(w, fmt.Sprintf("<hpoa:getBladeMpInfoResponse><hpoa:bladeMpInfo><hpoa:bayNumber>%d</hpoa:bayNumber><hpoa:ipAddress>%s</hpoa:ipAddress>"+
			"<hpoa:modelName>iLO4</hpoa:modelName><hpoa:fwVersion>2.55 Aug 16 2017</hpoa:fwVersion></hpoa:bladeMpInfo></hpoa:getBladeMpInfoResponse>", b.Bay, esc(b.ILOAddress)))
	case "setBladeOneTimeBoot":
		call += " " + o.Agent
		b.PXENext = o.Agent == "PXE"
		s.answer(w, "<hpoa:setBladeOneTimeBootResponse><hpoa:returnCodeOk/></hpoa:setBladeOneTimeBootResponse>")
	case "setBladeUid":
		call += " " + o.UID
		b.UID = strings.TrimPrefix(o.UID, "UID_CMD_")
		s.answer(w, "<hpoa:setBladeUidResponse><hpoa:returnCodeOk/></hpoa:setBladeUidResponse>")
	case "setBladePower":
		call += " " + o.Power
		if s.busy > 0 {
			s.busy--
			s.calls = append(s.calls, call+" busy")
			s.fault(w, "SOAP-ENV:Receiver", "", "busy", 151, "Enclosure Busy. Please try again later.")
			return
		}
		s.power(b, o.Power)
		s.answer(w, "<hpoa:setBladePowerResponse><hpoa:returnCodeOk/></hpoa:setBladePowerResponse>")
	default:
		s.fault(w, "SOAP-ENV:Sender", "", "unknown operation", 3, "The operation "+name+" is not supported.")
		return
	}
	s.calls = append(s.calls, call)
}

// power applies a setBladePower action: a press turns an off blade on (an
// on blade gets a shutdown request, which the test machine honours at
// once), a hold turns it off, a cold boot or reset turns it (back) on.
func (s *Server) power(b *Blade, action string) {
	was := b.On
	switch action {
	case "MOMENTARY_PRESS":
		b.On = !b.On
	case "PRESS_AND_HOLD":
		b.On = false
	case "COLD_BOOT", "RESET":
		b.On = true
	}
	booted := b.On && (!was || action == "COLD_BOOT" || action == "RESET")
	pxe := booted && b.PXENext
	if booted {
		b.PXENext = false
	}
	if s.OnPower != nil && (booted || was != b.On) {
		on, bay := b.On, b.Bay
		go s.OnPower(bay, on, pxe)
	}
}

func bladeInfo(b *Blade) string {
	var x strings.Builder
	fmt.Fprintf(&x, "<hpoa:bladeInfo><hpoa:bayNumber>%d</hpoa:bayNumber><hpoa:presence>PRESENT</hpoa:presence><hpoa:bladeType>BLADE_TYPE_SERVER</hpoa:bladeType>"+
		"<hpoa:name>%s</hpoa:name><hpoa:manufacturer>HP</hpoa:manufacturer><hpoa:partNumber>%s</hpoa:partNumber><hpoa:serialNumber>%s</hpoa:serialNumber>"+
		"<hpoa:uuid>%s</hpoa:uuid><hpoa:romVersion>I31 06/01/2015</hpoa:romVersion><hpoa:numberOfCpus>%d</hpoa:numberOfCpus><hpoa:cpus>",
		b.Bay, esc(b.Product), esc(b.PartNumber), esc(b.Serial), esc(b.UUID), len(b.CPUs))
	for _, c := range b.CPUs {
		fmt.Fprintf(&x, "<hpoa:bladeCpuInfo><hpoa:cpuType>%s</hpoa:cpuType><hpoa:cpuSpeed>%d</hpoa:cpuSpeed></hpoa:bladeCpuInfo>", esc(c), b.CPUMHz)
	}
	fmt.Fprintf(&x, "</hpoa:cpus><hpoa:memory>%d</hpoa:memory><hpoa:numberOfNics>%d</hpoa:numberOfNics><hpoa:nics>", b.MemoryMB, len(b.MACs))
	for i, m := range b.MACs {
		fmt.Fprintf(&x, "<hpoa:bladeNicInfo><hpoa:port>NIC %d</hpoa:port><hpoa:macAddress>%s</hpoa:macAddress></hpoa:bladeNicInfo>", i+1, strings.ToUpper(m))
	}
	x.WriteString("</hpoa:nics></hpoa:bladeInfo>")
	return x.String()
}

func bladeStatus(b *Blade) string {
	powered := "POWER_OFF"
	if b.On {
		powered = "POWER_ON"
	}
	watts := 0
	if b.On {
		watts = 180
	}
	return fmt.Sprintf("<hpoa:bladeStatus><hpoa:bayNumber>%d</hpoa:bayNumber><hpoa:presence>PRESENT</hpoa:presence><hpoa:operationalStatus>OP_STATUS_OK</hpoa:operationalStatus>"+
		"<hpoa:powered>%s</hpoa:powered><hpoa:uid>UID_%s</hpoa:uid><hpoa:powerConsumed>%d</hpoa:powerConsumed></hpoa:bladeStatus>", b.Bay, powered, b.UID, watts)
}

const envelope = `<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:hpoa="hpoa.xsd">
<SOAP-ENV:Body>%s</SOAP-ENV:Body>
</SOAP-ENV:Envelope>`

func (s *Server) answer(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
	fmt.Fprintf(w, envelope, body)
}

func (s *Server) fault(w http.ResponseWriter, code, subcode, reason string, errCode int, errText string) {
	var f strings.Builder
	f.WriteString("<SOAP-ENV:Fault><SOAP-ENV:Code><SOAP-ENV:Value>" + code + "</SOAP-ENV:Value>")
	if subcode != "" {
		f.WriteString("<SOAP-ENV:Subcode><SOAP-ENV:Value>" + subcode + "</SOAP-ENV:Value></SOAP-ENV:Subcode>")
	}
	f.WriteString("</SOAP-ENV:Code><SOAP-ENV:Reason><SOAP-ENV:Text xml:lang=\"en\">" + esc(reason) + "</SOAP-ENV:Text></SOAP-ENV:Reason>")
	if errText != "" {
		fmt.Fprintf(&f, "<SOAP-ENV:Detail><hpoa:faultInfo><hpoa:operationName>op</hpoa:operationName><hpoa:errorCode>%d</hpoa:errorCode><hpoa:errorText>%s</hpoa:errorText></hpoa:faultInfo></SOAP-ENV:Detail>", errCode, esc(errText))
	}
	f.WriteString("</SOAP-ENV:Fault>")
	w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, envelope, f.String())
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
