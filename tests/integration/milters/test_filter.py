#!/usr/bin/python3
"""A scriptable milter for ringmx's milter client tests, on Debian's pymilter
(python3-milter 1.0.5 over libmilter 1.0.1). Not a test itself: the tests
start it with

    /usr/bin/python3 test_filter.py --socket inet:PORT@127.0.0.1 --log FILE
    /usr/bin/python3 test_filter.py --socket unix:/path/to/sock --log FILE

(tests/integration/milter_peers.py PyFilter does that and reads the log).
pymilter lives in /usr/lib/python3/dist-packages, so run it with Debian's
/usr/bin/python3, not another interpreter on PATH.

It negotiates milter protocol 6 and keeps every action the MTA offers. Each
callback is one JSON object on its own line of the log file:

  {"t": 1733400000.123, "conn": 3, "event": "envrcpt", "args": {...},
   "macros": {"i": "4Y3...", "{rcpt_addr}": "a@b"}, "reply": "continue"}

conn numbers the MTA connections (1, 2, ... in the order negotiate was
called); events are negotiate, connect, hello, envfrom, envrcpt, data,
header, eoh, body, eom, abort, close, unknown, plus "start" (once, conn 0)
and "error" (a directive that failed, with the Python error). "macros" holds
only the macros getsymval() returned a value for, out of MACROS below.
"reply" is what the callback answered: continue, accept, reject, tempfail,
discard, skip, noreply, or "reply 550 5.7.9 ..." when a reply text was set.
Arguments logged per event:
  negotiate  offered {actions, protocol} and agreed {actions, protocol}, hex
  connect    hostname, family (inet, inet6, unix, unknown), address, port
  hello      name
  envfrom    address, params (the ESMTP arguments, a list)
  envrcpt    address, params
  header     name, value (as received: leading space only with
             --leading-space, see below)
  body       size (one line per chunk the MTA sent)
  eom        body_size, body_sha256, directives, and "actions": the
             modifications made, in order (e.g. ["addheader X-Test-Added"])
  unknown    command

Behaviour is chosen by the message itself, so one filter serves many tests:

  HELO/EHLO name  ACTION.helo.test          e.g. reject.helo.test
  MAIL FROM       ACTION-mail@...           the answer to MAIL
                  ACTION-data@...           the answer to DATA
                  ACTION-eoh@...            the answer to end of headers
                  ACTION-body@...           the answer to the first body chunk
  RCPT TO         ACTION-rcpt@...           the answer to that RCPT only
                  delete-me@...             a recipient the delrcpt directive
                                            removes
  header          X-Test-Eom: D1, D2, ...   directives run at end of message
  unknown command ACTION ...                e.g. "REPLY x": the answer to it

ACTION (HELO, MAIL, RCPT, DATA, EOH, body) is one of
  continue, accept, reject, tempfail, discard
  reply       setreply("550", "5.7.9", "custom text") and REJECT
  replytemp   setreply("451", "4.7.9", "custom temporary text") and TEMPFAIL
  replyml     a two-line reply: 550 5.7.9 "first line" / "second line", REJECT
  skip        SKIP (body only: no more body chunks; needs SMFIP_SKIP)
  slowN       sleep N seconds, then continue (N an integer)

End-of-message directives (X-Test-Eom, comma-separated, run in the order
given; the modifications first, then the last of the final answers):
  addheader     add "X-Test-Added: added by test_filter" (at the end)
  insheader     insert "X-Test-Inserted: inserted at 0" at index 0 (top)
  chgheader     change the first X-Change-Me to "changed by test_filter"
  delheader     delete the first X-Delete-Me (chgheader with no value)
  chgfrom       change the sender to <new-sender@example.test> with the ESMTP
                argument RET=HDRS (SMFIR_CHGFROM carries arguments);
                chgfrom:ARGS gives other arguments (space-separated)
  chgfrom_plain the same without ESMTP argument
  addrcpt       add <added@example.test>
  addrcpt_par   add <added-par@example.test> with NOTIFY=NEVER (SMFIR_ADDRCPT_PAR);
                addrcpt_par:ARGS gives other arguments
  delrcpt       delete every recipient whose local part is delete-me, as the
                MTA gave it (with its angle brackets)
  delrcpt:ADDR  delete ADDR (give it as the MTA does, e.g. <a@b.test>)
  replacebody   replace the body with REPLACED_BODY below
  quarantine    quarantine with the reason "held by test_filter"
  progress      progress:TOTAL:GAP, default progress:6:1 -- call progress()
                every GAP seconds until TOTAL seconds have passed: longer in
                total than an MTA's command timeout, each gap shorter
  slow:N        sleep N seconds (to hit the MTA's timeouts)
  reject, tempfail, discard, accept, continue, reply, replytemp, replyml
                the final answer (default continue, which at end of message
                means accept)

Command-line flags for whole-connection behaviour:
  --reject-connect     REJECT every connection at the connect callback
  --tempfail-connect   TEMPFAIL every connection at connect
  --hang-connect N     sleep N seconds in the connect callback, then continue
                       (a hanging milter; N bounds it)
  --no-reply-steps     ask for every SMFIP_NR_* step the MTA offers (no reply
                       to connect, helo, mail, rcpt, data, unknown, header,
                       eoh, body); those callbacks then answer NOREPLY and
                       their stage directives are logged but not applied
  --leading-space      ask for SMFIP_HDR_LEADSPC (header values exactly as sent,
                       with the space after the colon)
  --rcpt-rej           ask for SMFIP_RCPT_REJ (rejected recipients too)
  --skip-callbacks S   ask the MTA not to send stage S at all (SMFIP_NO*);
                       comma-separated among connect, helo, mail, rcpt,
                       data, header, eoh, body, unknown
  --symlist STAGE:MACROS  request macros with SMFIF_SETSYMLIST, e.g.
                       --symlist "connect:{client_addr} j" (at most 5 a stage;
                       stages connect, helo, mail, rcpt, data, eoh, eom)

What pymilter 1.0.5 supports (and this filter uses): a negotiate callback that
gets the MTA's four option words and returns the ones it wants (we override
Milter.Base.negotiate); the @Milter.noreply / @Milter.nocallback decorators are
the class-level shortcut for the same SMFIP_NR_* / SMFIP_NO* bits; setreply
with up to 32 lines (smfi_setmlreply); addheader with an index (insheader);
chgheader with None to delete; chgfrom and addrcpt with an ESMTP-argument
string (addrcpt with arguments is SMFIR_ADDRCPT_PAR); replacebody; quarantine;
progress; setsymlist (Milter.Base.setsymlist is broken on Python 3 in 1.0.5,
so this filter calls the C context's). It has no call for SMFIR_SHUTDOWN or
SMFIR_CONN_FAIL. libmilter itself adds SMFIP_NOHELO etc. for callbacks a
filter does not register; this one registers them all.
"""

import argparse
import hashlib
import itertools
import json
import os
import re
import sys
import threading
import time

try:
    import Milter
    import milter
except ImportError:
    sys.exit("test_filter.py: pymilter is missing (Debian package python3-milter; "
             "run with /usr/bin/python3)")

MACROS = ("j", "{daemon_name}", "{daemon_addr}", "{if_name}", "{if_addr}", "v", "_",
          "{client_addr}", "{client_port}", "{client_name}", "{client_ptr}",
          "{client_connections}", "{tls_version}", "{cipher}", "{cipher_bits}",
          "{cert_subject}", "{cert_issuer}", "{auth_type}", "{auth_authen}",
          "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}", "{rcpt_addr}",
          "{rcpt_host}", "{rcpt_mailer}", "i")

REPLACED_BODY = b"Body replaced by test_filter.\r\nSecond line.\r\n"

ANSWERS = {
    "continue": Milter.CONTINUE, "accept": Milter.ACCEPT, "reject": Milter.REJECT,
    "tempfail": Milter.TEMPFAIL, "discard": Milter.DISCARD, "skip": Milter.SKIP,
}
NAMES = {v: k for k, v in ANSWERS.items()}
NAMES[Milter.NOREPLY] = "noreply"

STAGE_NR = {"connect": Milter.P_NR_CONN, "hello": Milter.P_NR_HELO,
            "envfrom": Milter.P_NR_MAIL, "envrcpt": Milter.P_NR_RCPT,
            "data": Milter.P_NR_DATA, "unknown": Milter.P_NR_UNKN,
            "header": Milter.P_NR_HDR, "eoh": Milter.P_NR_EOH, "body": Milter.P_NR_BODY}
SKIPPABLE = {"connect": Milter.P_NOCONNECT, "helo": Milter.P_NOHELO,
             "mail": Milter.P_NOMAIL, "rcpt": Milter.P_NORCPT, "data": Milter.P_NODATA,
             "header": Milter.P_NOHDRS, "eoh": Milter.P_NOEOH, "body": Milter.P_NOBODY,
             "unknown": Milter.P_NOUNKNOWN}
SYMLIST_STAGES = {"connect": Milter.M_CONNECT, "helo": Milter.M_HELO,
                  "mail": Milter.M_ENVFROM, "rcpt": Milter.M_ENVRCPT, "data": Milter.M_DATA,
                  "eoh": Milter.M_EOH, "eom": Milter.M_EOM}
FAMILIES = {2: "inet", 10: "inet6", 1: "unix", 0: "unknown"}

OPTS = None          # the parsed command line
LOG = None           # the log file, line-buffered
LOG_LOCK = threading.Lock()
CONN_IDS = itertools.count(1)


def log(conn, event, args=None, macros=None, reply=None):
    rec = {"t": round(time.time(), 3), "conn": conn, "event": event}
    if args is not None:
        rec["args"] = args
    if macros is not None:
        rec["macros"] = macros
    if reply is not None:
        rec["reply"] = reply
    line = json.dumps(rec, sort_keys=True)
    with LOG_LOCK:
        LOG.write(line + "\n")
        LOG.flush()


def strip_brackets(addr):
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    return addr


def local_part(addr):
    return strip_brackets(addr).rpartition("@")[0].lower()


def hexflags(n):
    return "0x%x" % n


class TestFilter(Milter.Base):
    """One MTA connection (libmilter calls the factory once a connection)."""

    def __init__(self):
        self.conn = next(CONN_IDS)
        self.stage_actions = {}   # "data"/"eoh"/"body" -> ACTION, from MAIL FROM
        self.reset_message()

    def reset_message(self):
        self.rcpts = []
        self.eom_directives = []
        self.body_size = 0
        self.body_hash = hashlib.sha256()
        self.body_answered = False

    # --- helpers -----------------------------------------------------------
    def macros(self):
        out = {}
        for name in MACROS:
            try:
                value = self.getsymval(name)
            except Exception:  # noqa: BLE001 - a context gone away
                value = None
            if value is not None:
                out[name] = value
        return out

    def answer(self, stage, action, args):
        """Applies ACTION for the callback `stage`, logs the event, returns the code."""
        nr = STAGE_NR.get(stage, 0)
        macros = self.macros()
        if nr and self._protocol & nr:
            if action not in (None, "continue"):
                args = dict(args, ignored_action=action)
            log(self.conn, stage, args, macros, "noreply")
            return Milter.NOREPLY
        code, reply = self.perform(action or "continue")
        log(self.conn, stage, args, macros, reply)
        return code

    def perform(self, action):
        """(code, reply text for the log) of ACTION; sets the reply text where asked."""
        m = re.fullmatch(r"slow(\d+)", action)
        if m:
            time.sleep(int(m.group(1)))
            return Milter.CONTINUE, "continue"
        if action == "reply":
            self.setreply("550", "5.7.9", "custom text")
            return Milter.REJECT, "reply 550 5.7.9 custom text"
        if action == "replytemp":
            self.setreply("451", "4.7.9", "custom temporary text")
            return Milter.TEMPFAIL, "reply 451 4.7.9 custom temporary text"
        if action == "replyml":
            self.setreply("550", "5.7.9", "first line", "second line")
            return Milter.REJECT, "reply 550 5.7.9 first line / second line"
        code = ANSWERS.get(action, Milter.CONTINUE)
        return code, NAMES[code]

    # --- callbacks -----------------------------------------------------------
    def negotiate(self, opts):
        offered_actions, offered_proto = opts[0], opts[1]
        self._actions = offered_actions   # every action the MTA offers
        proto = offered_proto & Milter.P_SKIP
        if OPTS.no_reply_steps:
            proto |= offered_proto & (Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL |
                                      Milter.P_NR_RCPT | Milter.P_NR_DATA | Milter.P_NR_UNKN |
                                      Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR)
        if OPTS.leading_space:
            proto |= offered_proto & Milter.P_HDR_LEADSPC
        if OPTS.rcpt_rej:
            proto |= offered_proto & Milter.P_RCPT_REJ
        for stage in OPTS.skip_callbacks:
            proto |= offered_proto & SKIPPABLE[stage]
        self._protocol = proto
        opts[0], opts[1], opts[2], opts[3] = offered_actions, proto, 0, 0
        symlists = {}
        for stage, macros in OPTS.symlist:
            if offered_actions & Milter.SETSYMLIST:
                # Straight to the C context: Milter.Base.setsymlist in pymilter
                # 1.0.5 hands it bytes and the C call takes only str
                # ("setsymlist() argument 2 must be str, not bytes").
                self._ctx.setsymlist(SYMLIST_STAGES[stage], macros)
                symlists[stage] = macros
        log(self.conn, "negotiate",
            {"offered": {"actions": hexflags(offered_actions), "protocol": hexflags(offered_proto)},
             "agreed": {"actions": hexflags(offered_actions), "protocol": hexflags(proto)},
             "symlist": symlists}, reply="continue")
        return Milter.CONTINUE

    def connect(self, hostname, family, hostaddr):
        args = {"hostname": hostname, "family": FAMILIES.get(family, str(family))}
        if isinstance(hostaddr, tuple):
            args["address"], args["port"] = hostaddr[0], hostaddr[1]
        elif hostaddr is not None:
            args["address"] = hostaddr
        action = None
        if OPTS.reject_connect:
            action = "reject"
        elif OPTS.tempfail_connect:
            action = "tempfail"
        elif OPTS.hang_connect:
            log(self.conn, "hang", {"seconds": OPTS.hang_connect})
            time.sleep(OPTS.hang_connect)
        return self.answer("connect", action, args)

    def hello(self, name):
        m = re.fullmatch(r"([a-z0-9]+)\.helo\.test", name.lower())
        return self.answer("hello", m.group(1) if m else None, {"name": name})

    def envfrom(self, addr, *params):
        self.reset_message()
        self.stage_actions = {}
        action = None
        m = re.fullmatch(r"([a-z0-9]+)-(mail|data|eoh|body)", local_part(addr))
        if m:
            if m.group(2) == "mail":
                action = m.group(1)
            else:
                self.stage_actions[m.group(2)] = m.group(1)
        return self.answer("envfrom", action, {"address": addr, "params": list(params)})

    def envrcpt(self, addr, *params):
        self.rcpts.append(addr)
        m = re.fullmatch(r"([a-z0-9]+)-rcpt", local_part(addr))
        return self.answer("envrcpt", m.group(1) if m else None,
                           {"address": addr, "params": list(params)})

    def data(self):
        return self.answer("data", self.stage_actions.get("data"), {})

    def unknown(self, command):
        if isinstance(command, bytes):
            command = command.decode("utf-8", "replace")
        # An unknown command named after an answer ("REPLY ...", "REJECT ...")
        # gets that answer.
        verb = command.split(" ", 1)[0].lower()
        action = verb if verb in ANSWERS or verb.startswith("reply") else None
        return self.answer("unknown", action, {"command": command})

    def header(self, name, value):
        if name.lower() == "x-test-eom":
            self.eom_directives += [d.strip() for d in value.split(",") if d.strip()]
        return self.answer("header", None, {"name": name, "value": value})

    def eoh(self):
        return self.answer("eoh", self.stage_actions.get("eoh"), {})

    def body(self, chunk):
        self.body_size += len(chunk)
        self.body_hash.update(chunk)
        action = None
        if not self.body_answered:
            self.body_answered = True
            action = self.stage_actions.get("body")
        return self.answer("body", action, {"size": len(chunk)})

    def eom(self):
        done, final = [], "continue"
        macros = self.macros()
        for directive in self.eom_directives:
            try:
                final = self.eom_directive(directive, done) or final
            except Exception as e:  # noqa: BLE001 - logged for the test to see
                log(self.conn, "error", {"directive": directive, "error": repr(e)})
        code, reply = self.perform(final)
        log(self.conn, "eom", {"body_size": self.body_size,
                               "body_sha256": self.body_hash.hexdigest(),
                               "directives": self.eom_directives, "actions": done},
            macros, reply)
        self.reset_message()
        return code

    def eom_directive(self, directive, done):
        """Runs one directive; returns a final answer's name, or None."""
        name, _, arg = directive.partition(":")
        name = name.strip().lower()
        if name in ANSWERS or name in ("reply", "replytemp", "replyml"):
            return name
        if name == "addheader":
            self.addheader("X-Test-Added", "added by test_filter")
            done.append("addheader X-Test-Added")
        elif name == "insheader":
            self.addheader("X-Test-Inserted", "inserted at 0", 0)
            done.append("insheader 0 X-Test-Inserted")
        elif name == "chgheader":
            self.chgheader("X-Change-Me", 1, "changed by test_filter")
            done.append("chgheader X-Change-Me 1")
        elif name == "delheader":
            self.chgheader("X-Delete-Me", 1, None)
            done.append("delheader X-Delete-Me 1")
        elif name == "chgfrom":
            params = arg.strip() or "RET=HDRS"
            self.chgfrom("<new-sender@example.test>", params)
            done.append("chgfrom <new-sender@example.test> " + params)
        elif name == "chgfrom_plain":
            self.chgfrom("<new-sender@example.test>")
            done.append("chgfrom <new-sender@example.test>")
        elif name == "addrcpt":
            self.addrcpt("<added@example.test>")
            done.append("addrcpt <added@example.test>")
        elif name == "addrcpt_par":
            params = arg.strip() or "NOTIFY=NEVER"
            self.addrcpt("<added-par@example.test>", params)
            done.append("addrcpt_par <added-par@example.test> " + params)
        elif name == "delrcpt":
            targets = [arg.strip()] if arg.strip() else \
                [r for r in self.rcpts if local_part(r) == "delete-me"]
            for r in targets:
                self.delrcpt(r)
                done.append("delrcpt " + r)
        elif name == "replacebody":
            self.replacebody(REPLACED_BODY)
            done.append("replacebody %d" % len(REPLACED_BODY))
        elif name == "quarantine":
            self.quarantine("held by test_filter")
            done.append("quarantine")
        elif name == "progress":
            parts = [p for p in arg.split(":") if p]
            total = float(parts[0]) if parts else 6.0
            gap = float(parts[1]) if len(parts) > 1 else 1.0
            deadline = time.monotonic() + total
            calls = 0
            while time.monotonic() < deadline:
                time.sleep(min(gap, max(0.0, deadline - time.monotonic())))
                self.progress()
                calls += 1
            done.append("progress %d" % calls)
        elif name == "slow":
            time.sleep(float(arg or 1))
            done.append("slow " + (arg or "1"))
        else:
            raise ValueError("unknown directive " + directive)
        return None

    def abort(self):
        log(self.conn, "abort", {}, self.macros())
        self.reset_message()
        return Milter.CONTINUE

    def close(self):
        log(self.conn, "close", {})
        return Milter.CONTINUE


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", required=True,
                   help="inet:PORT@HOST, inet6:PORT@HOST, unix:/path or local:/path")
    p.add_argument("--log", required=True, help="the JSON-lines log file (appended to)")
    p.add_argument("--reject-connect", action="store_true")
    p.add_argument("--tempfail-connect", action="store_true")
    p.add_argument("--hang-connect", type=float, default=0, metavar="SECONDS")
    p.add_argument("--no-reply-steps", action="store_true")
    p.add_argument("--leading-space", action="store_true")
    p.add_argument("--rcpt-rej", action="store_true")
    p.add_argument("--skip-callbacks", default="",
                   help="comma-separated stages the MTA should not send")
    p.add_argument("--symlist", action="append", default=[], metavar="STAGE:MACROS")
    p.add_argument("--timeout", type=int, default=600,
                   help="libmilter's I/O timeout towards the MTA, seconds")
    opts = p.parse_args(argv)
    opts.skip_callbacks = [s.strip() for s in opts.skip_callbacks.split(",") if s.strip()]
    for s in opts.skip_callbacks:
        if s not in SKIPPABLE:
            p.error("unknown stage in --skip-callbacks: " + s)
    symlist = []
    for item in opts.symlist:
        stage, _, macros = item.partition(":")
        if stage not in SYMLIST_STAGES or not macros.strip():
            p.error("--symlist wants STAGE:MACROS, got " + item)
        symlist.append((stage, macros.strip()))
    opts.symlist = symlist
    spec = opts.socket
    if spec.startswith("unix:"):
        spec = "local:" + spec[len("unix:"):]
    opts.libmilter_socket = spec
    return opts


def main(argv=None):
    global OPTS, LOG
    OPTS = parse_args(sys.argv[1:] if argv is None else argv)
    LOG = open(OPTS.log, "a", buffering=1)
    if OPTS.libmilter_socket.startswith("local:"):
        try:
            os.unlink(OPTS.libmilter_socket[len("local:"):])
        except FileNotFoundError:
            pass
    Milter.factory = TestFilter
    milter.set_flags(milter.CURR_ACTS)
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_helo_callback(lambda ctx, name: ctx.getpriv().hello(name))
    milter.set_envfrom_callback(lambda ctx, *a: ctx.getpriv().envfrom_bytes(*a))
    milter.set_envrcpt_callback(lambda ctx, *a: ctx.getpriv().envrcpt_bytes(*a))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.setconn(OPTS.libmilter_socket)
    milter.settimeout(OPTS.timeout)
    milter.register("ringmx-test-filter",
                    data=lambda ctx: ctx.getpriv().data(),
                    unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
                    negotiate=Milter.negotiate_callback)
    milter.opensocket(True)   # bound and listening from here on
    log(0, "start", {"pid": os.getpid(), "socket": OPTS.socket,
                     "pymilter": Milter.__version__,
                     "libmilter": ".".join(map(str, milter.getversion())),
                     "flags": {k: v for k, v in vars(OPTS).items()
                               if k not in ("log", "socket", "libmilter_socket")}})
    milter.main()
    log(0, "stop", {"pid": os.getpid()})


if __name__ == "__main__":
    main()
