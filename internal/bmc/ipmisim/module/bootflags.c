/*
 * bootflags: an ipmi_sim module that models the IPMI system boot options the
 * way a real BMC keeps them (IPMI v2.0, section 28.12/28.13, parameters 3
 * and 5), because ipmi_sim's own handling neither reports the "boot flags
 * valid" bit nor keeps the valid-bit clearing parameter:
 *
 *  - Set System Boot Options, parameter 5 (boot flags): with the valid bit
 *    set, the device is written to DIR/boot (the name the chassis hook reads
 *    at POST) and, unless bit 3 of parameter 3 ("don't clear the valid bit
 *    when no chassis control arrives within 60 s") is set, the time at
 *    which the flags expire to DIR/boot.expires.
 *  - Parameter 3 is kept and read back.
 *  - Get System Boot Options, parameter 5: the valid bit is reported as a
 *    BMC reports it: set until the flags are used by a boot (the hook
 *    writes "default") or expire.
 *  - Parameters 0 (set in progress) and 4 (boot info acknowledge) are
 *    accepted, as ipmitool sends them around every change.
 *
 * The chassis hook applies the same expiry when the machine actually POSTs.
 * Loaded with: loadlib "bootflags.so" "DIR"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>

#include <OpenIPMI/ipmi_msgbits.h>
#include <OpenIPMI/ipmi_err.h>
#include <OpenIPMI/serv.h>
#include <OpenIPMI/mcserv.h>

#define EXPIRY_SECONDS 60

static char dir[4096];
static unsigned char clearing;	/* parameter 3 */
static unsigned char flags1;	/* parameter 5, data 1, as last set */

static const char *devices[16] = {
	[0] = "default", [1] = "pxe", [2] = "disk", [3] = "safe", [4] = "diag",
	[5] = "cdrom", [6] = "bios", [15] = "floppy",
};

static void path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static int write_file(const char *name, const char *text)
{
	char p[4200], tmp[4300];
	FILE *f;

	path(p, sizeof(p), name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", p);
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	fputs(text, f);
	if (fclose(f))
		return -1;
	return rename(tmp, p);
}

static void read_file(const char *name, char *buf, size_t len)
{
	char p[4200];
	FILE *f;

	buf[0] = '\0';
	path(p, sizeof(p), name);
	f = fopen(p, "r");
	if (!f)
		return;
	if (!fgets(buf, len, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
}

static void log_line(const char *text)
{
	char p[4200];
	FILE *f;
	time_t now = time(NULL);
	struct tm tm;

	path(p, sizeof(p), "chassis.log");
	f = fopen(p, "a");
	if (!f)
		return;
	localtime_r(&now, &tm);
	fprintf(f, "%02d:%02d:%02d %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, text);
	fclose(f);
}

/* current_device reports the device the flags hold now ("default" when
 * none is valid) and whether they are still valid. */
static int current_device(void)
{
	char boot[64], expires[64];
	int i;

	read_file("boot", boot, sizeof(boot));
	if (boot[0] == '\0' || strcmp(boot, "default") == 0)
		return 0;
	read_file("boot.expires", expires, sizeof(expires));
	if (expires[0] != '\0' && time(NULL) > strtoll(expires, NULL, 10))
		return 0;
	for (i = 1; i < 16; i++)
		if (devices[i] && strcmp(devices[i], boot) == 0)
			return i;
	return 0;
}

static void set_boot_options(lmc_data_t *mc, msg_t *msg, unsigned char *rdata,
			     unsigned int *rdata_len, void *cb_data)
{
	unsigned char param;
	char line[128];
	int dev;

	*rdata_len = 1;
	rdata[0] = 0;
	if (msg->len < 1) {
		rdata[0] = IPMI_REQUEST_DATA_LENGTH_INVALID_CC;
		return;
	}
	param = msg->data[0] & 0x7f;
	switch (param) {
	case 0: /* set in progress */
	case 4: /* boot info acknowledge */
		return;
	case 3:
		if (msg->len < 2) {
			rdata[0] = IPMI_REQUEST_DATA_LENGTH_INVALID_CC;
			return;
		}
		clearing = msg->data[1] & 0x1f;
		snprintf(line, sizeof(line), "boot flag valid-bit clearing 0x%02x%s", clearing,
			 (clearing & 0x08) ? " (60 s timeout disabled)" : "");
		log_line(line);
		return;
	case 5:
		if (msg->len < 6) {
			rdata[0] = IPMI_REQUEST_DATA_LENGTH_INVALID_CC;
			return;
		}
		flags1 = msg->data[1];
		dev = (msg->data[2] >> 2) & 0x0f;
		if (!(flags1 & 0x80) || !devices[dev])
			dev = 0;
		if (write_file("boot", devices[dev]) != 0) {
			rdata[0] = IPMI_UNKNOWN_ERR_CC;
			return;
		}
		if (dev != 0 && !(clearing & 0x08)) {
			snprintf(line, sizeof(line), "%lld", (long long)time(NULL) + EXPIRY_SECONDS);
			write_file("boot.expires", line);
		} else {
			path(line, sizeof(line), "boot.expires");
			remove(line);
		}
		snprintf(line, sizeof(line), "boot device %s%s", devices[dev],
			 dev != 0 && !(clearing & 0x08) ? " (valid for 60 s)" : "");
		log_line(line);
		return;
	default:
		rdata[0] = 0x80; /* parameter not supported */
		return;
	}
}

static void get_boot_options(lmc_data_t *mc, msg_t *msg, unsigned char *rdata,
			     unsigned int *rdata_len, void *cb_data)
{
	unsigned char param;
	int dev;

	if (msg->len < 3) {
		rdata[0] = IPMI_REQUEST_DATA_LENGTH_INVALID_CC;
		*rdata_len = 1;
		return;
	}
	param = msg->data[0] & 0x7f;
	rdata[0] = 0;
	rdata[1] = 1;		/* parameter version */
	rdata[2] = param;
	switch (param) {
	case 0:
		rdata[3] = 0;
		*rdata_len = 4;
		return;
	case 3:
		rdata[3] = clearing;
		*rdata_len = 4;
		return;
	case 4:
		rdata[3] = 0;
		rdata[4] = 0;
		*rdata_len = 5;
		return;
	case 5:
		dev = current_device();
		rdata[3] = dev ? (0x80 | (flags1 & 0x60)) : 0;
		rdata[4] = dev << 2;
		rdata[5] = rdata[6] = rdata[7] = 0;
		*rdata_len = 8;
		return;
	default:
		rdata[0] = 0x80;
		*rdata_len = 1;
		return;
	}
}

int ipmi_sim_module_init(sys_data_t *sys, const char *initstr)
{
	int rv;

	if (!initstr || !initstr[0] || strlen(initstr) >= sizeof(dir) - 64)
		return EINVAL;
	strcpy(dir, initstr);
	rv = ipmi_emu_register_cmd_handler(IPMI_CHASSIS_NETFN, IPMI_SET_SYSTEM_BOOT_OPTIONS_CMD,
					   set_boot_options, NULL);
	if (!rv)
		rv = ipmi_emu_register_cmd_handler(IPMI_CHASSIS_NETFN, IPMI_GET_SYSTEM_BOOT_OPTIONS_CMD,
						   get_boot_options, NULL);
	return rv;
}
