package daemon

import (
	"context"
	"fmt"
	"net"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/netutil"
	"github.com/provisiond/provisiond/internal/pxe"
)

// listen binds every port before anything else opens, the privileged ones
// (ProxyDHCP, TFTP) first, so a missing privilege or a port in use is the
// first thing the operator hears about. The servers reach the boot tracker
// and the recorder, built later, through late.
func (d *instance) listen(context.Context) error {
	cfg := &d.cfg
	if cfg.DHCP.Enabled {
		d.dhcp = pxe.NewDHCPServer(pxe.DHCPConfig{
			Interfaces: d.ifaces, Port: cfg.DHCP.Port, ProxyPort: cfg.DHCP.ProxyPort, Advertise: d.advertise,
			HTTPPort: d.httpPort, Decider: d.late, Steps: d.late, Neighbors: d.neighbors, Observer: d.mets, Log: d.log,
		})
		if err := d.dhcp.Listen(); err != nil {
			return err
		}
		d.closers = append(d.closers, func() { d.dhcp.Close() })
		if cfg.Boot.IPv6RA {
			ra := pxe.NewRAServer(pxe.RAConfig{Interfaces: d.ifaces, Booting: d.dhcp.Booting, Steps: d.late, Log: d.log})
			if err := ra.Listen(); err != nil {
				// A speed-up, not a duty: boots go on, iPXE waits for IPv6.
				d.log.Warn("not answering iPXE's IPv6 router solicitations", "err", err)
			} else {
				d.ra = ra
				d.mets.Func("provisiond_ipv6_ra_sent_total", "Advertisements of no IPv6 router sent to booting machines whose solicitation no router answered.",
					func() float64 { return float64(ra.Stats().Answered) })
			}
		}
	}
	if cfg.TFTP.Enabled {
		srv, err := pxe.NewTFTPServer(pxe.TFTPConfig{
			Root: cfg.IPXEDir, Files: d.ipxeFiles, Port: cfg.TFTP.Port, Interfaces: d.ifaces, MaxBlockSize: cfg.TFTP.MaxBlockSize,
			Scripts: d.late, Neighbors: d.neighbors, Steps: d.late, Log: d.log, MaxTransfers: cfg.TFTP.MaxTransfers, Observer: d.mets,
			HTTPBase: func(local net.IP) string {
				if d.advertise != nil || local == nil {
					return d.baseURL()
				}
				return boot.BaseURL(local.String(), d.httpPort)
			},
		})
		if err != nil {
			return err
		}
		if err := srv.Listen(); err != nil {
			return err
		}
		d.tftp = srv
		d.closers = append(d.closers, func() { srv.Close() })
		d.mets.Func("provisiond_tftp_active_transfers", "TFTP transfers in flight.", func() float64 { return float64(srv.Stats().Active) })
	}
	httpLn, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("HTTP: listening on %s: %w (is another provisiond or web server on that port? set http.listen)", cfg.HTTP.Listen, err)
	}
	d.closers = append(d.closers, func() { httpLn.Close() })
	// One address cannot hold every connection (idle keep-alives, slow
	// readers): the rest of the lab keeps booting.
	d.httpLn = netutil.LimitListenerPerSource(httpLn, cfg.HTTP.MaxConnections, cfg.HTTP.MaxConnectionsPerSource,
		func() { d.mets.Dropped("http", "max_connections_per_source") })
	ctlLn, err := net.Listen("tcp", cfg.Control.Listen)
	if err != nil {
		return fmt.Errorf("control plane: listening on %s: %w (is another provisiond on that port? set control.listen)", cfg.Control.Listen, err)
	}
	d.closers = append(d.closers, func() { ctlLn.Close() })
	d.ctlLn = netutil.LimitListenerPerSource(ctlLn, cfg.Control.MaxConnections, cfg.Control.MaxConnections/4+1,
		func() { d.mets.Dropped("control", "max_connections_per_source") })
	return nil
}
