#!/usr/bin/env python3
"""CPU per request of each process of the `make up` stack during a `fund load` mix.

    benches/fund_cpu.py [fund load arguments...]

Runs `fund load` (release build) against the running stack; when it has created its accounts
(the "created ..." line), it reads utime+stime of fund serve, the proxy and every mariadbd of
./run from /proc/PID/stat, and again when the mix ends; also the statements the primaries
counted (`Questions`). Prints CPU µs per request of the mix for each process and the
statements per request that reached the primaries.
"""
import os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.environ.get("SHARDPROXY_RUN", os.path.join(ROOT, "run"))
TICK = os.sysconf("SC_CLK_TCK")


def procs():
    out = {"fund": int(open(f"{RUN}/fund.pid").read()), "proxy": int(open(f"{RUN}/proxy.pid").read())}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "mariadbd" in cmd and RUN + "/" in cmd:
            m = re.search(r"(s\d+-(primary|replica))", cmd)
            out[m.group(1) if m else f"mariadbd-{pid}"] = int(pid)
    return out


def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


COUNTERS = ("Questions", "Com_stmt_execute", "Com_stmt_prepare", "Com_begin", "Com_commit",
            "Com_rollback", "Com_select", "Com_set_option")


def questions(port):
    """The primary's statement counters (a dict)."""
    names = ",".join(f"'{c}'" for c in COUNTERS)
    r = subprocess.run(["mariadb", "--no-defaults", "--protocol=tcp", "-h127.0.0.1", f"-P{port}",
                        "-uroot", "-N", "-B", "-e",
                        f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})"],
                       capture_output=True, text=True)
    return {l.split()[0]: int(l.split()[1]) for l in r.stdout.splitlines() if l.strip()}


def snapshot(ps):
    return {k: ticks(v) for k, v in ps.items()}, {p: questions(p) for p in (3311, 3321)}


fund = os.environ.get("FUND_BIN", os.path.join(ROOT, "target/release/fund"))
ps = procs()
cmd = [fund, "load"] + sys.argv[1:]
p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
before = None
for line in p.stderr:
    sys.stderr.write(line)
    if before is None and line.startswith("created "):
        before = snapshot(ps)
stdout = p.stdout.read()
p.wait()
after = snapshot(ps)
print(stdout)
m = re.search(r"(\d+) requests in", stdout)
n = int(m.group(1)) if m else 0
print("command:", " ".join(cmd))
print(f"CPU per request of the mix ({n} requests), /proc/PID/stat utime+stime:")
total = 0
for k in ps:
    us = (after[0][k] - before[0][k]) * 1e6 / TICK / max(n, 1)
    total += us
    print(f"  {k:<12} {us:8.0f} us")
print(f"  {'all':<12} {total:8.0f} us")
for c in COUNTERS:
    d = sum(after[1][port].get(c, 0) - before[1][port].get(c, 0) for port in (3311, 3321))
    print(f"  primaries {c:<18} {d:9d}  {d / max(n, 1):6.2f} per request")
sys.exit(p.returncode)
